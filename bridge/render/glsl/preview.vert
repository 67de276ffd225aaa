#version 330 core
// Reference renderer: the sphere mesh carries only texture coordinates; positions come
// from ldm3d_displace.glsl (inserted above by the renderer, as TouchDesigner does with #include).
in vec2 in_uv;
uniform sampler2D uDepth;
uniform float uBaseRadius;
uniform float uStrength;
uniform mat4 uViewProj;
out vec2 vUv;
out vec3 vPosition;

void main()
{
    vec3 p = ldm3dDisplace(in_uv, uDepth, uBaseRadius, uStrength);
    vUv = in_uv;
    vPosition = p;
    gl_Position = uViewProj * vec4(p, 1.0);
}
