// A stub of what TouchDesigner puts before a GLSL MAT's pixel shader, as Derivative documents it
// ("Write a GLSL Material", https://docs.derivative.ca/Write_a_GLSL_Material): TD_NUM_COLOR_BUFFERS
// (the Render TOP's colour buffers), TDCheckDiscard, TDOutputSwizzle and the sTD2DInputs samplers.
#version 460
#define TD_NUM_COLOR_BUFFERS 1
uniform sampler2D sTD2DInputs[1];
void TDCheckDiscard() {}
vec4 TDOutputSwizzle(vec4 c) { return c; }
