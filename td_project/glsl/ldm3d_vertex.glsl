// GLSL MAT vertex shader (TouchDesigner). The geometry is a Grid SOP: only its texture
// coordinates matter; positions come from ldm3d_displace (a Text DAT synced to
// bridge/render/glsl/ldm3d_displace.glsl, the file the reference renderer uses too).
#include <ldm3d_displace>

uniform sampler2D sDepth;    // Samplers page: the depth Cross TOP
uniform float uBaseRadius;   // Vectors page
uniform float uStrength;     // Vectors page

out Vertex {
    vec2 texCoord;
} oVert;

void main()
{
    vec2 st = uv[0].st;
    oVert.texCoord = st;
    vec3 p = ldm3dDisplace(st, sDepth, uBaseRadius, uStrength);
    gl_Position = TDWorldToProj(TDDeform(p));
}
