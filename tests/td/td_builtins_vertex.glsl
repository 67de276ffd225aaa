// A stub of what TouchDesigner puts before a GLSL MAT's vertex shader, as Derivative documents it
// ("Write a GLSL Material", https://docs.derivative.ca/Write_a_GLSL_Material): the attributes P, N,
// Cd and uv[], the matrices in uTDMats, and TDDeform / TDWorldToProj. Only the declarations matter
// here: glslangValidator checks that our shaders use them with the right types.
#version 460
in vec3 P;
in vec3 N;
in vec4 Cd;
in vec3 uv[8];
struct TDMatrix { mat4 world; mat4 worldCam; mat4 proj; mat4 worldCamProj; };
uniform TDMatrix uTDMats[1];
uniform sampler2D sTD2DInputs[1];
vec4 TDDeform(vec3 pos) { return uTDMats[0].world * vec4(pos, 1.0); }
vec4 TDWorldToProj(vec4 v) { return uTDMats[0].proj * uTDMats[0].worldCam * v; }
