// GLSL MAT vertex shader (TouchDesigner). The geometry is a Grid SOP of 1 x 1 in the XY plane:
// only where each point lies on it matters (P.xy + 0.5 runs 0..1 across it); positions come from
// ldm3d_displace (a Text DAT synced to bridge/render/glsl/ldm3d_displace.glsl, the file the
// reference renderer uses too).
#include <ldm3d_displace>

uniform sampler2D sDepth;         // Samplers page: the depth Cross TOP
uniform sampler2D sPreviewDepth;  // Samplers page: the preview slot's depth (Movie File In TOP)
uniform float uBaseRadius;        // Vectors page
uniform float uStrength;          // Vectors page
uniform float uForming;           // Vectors page: 0 = the world alone; set by the extension while a world forms

out Vertex {
    vec2 texCoord;
} oVert;

void main()
{
    vec2 st = clamp(P.xy + 0.5, 0.0, 1.0);
    st = mix(st, round(st), vec2(lessThan(abs(st - round(st)), vec2(1e-5))));  // edges exactly 0 or 1: seam and poles close
    oVert.texCoord = st;
    vec3 p = ldm3dDisplace(st, sDepth, uBaseRadius, uStrength);
    if (uForming > 0.0) {
        // Both points lie on the same ray from the centre: mixing them mixes the two radii (the depths).
        p = mix(p, ldm3dDisplace(st, sPreviewDepth, uBaseRadius, uStrength), uForming);
    }
    gl_Position = TDWorldToProj(TDDeform(p));
}
