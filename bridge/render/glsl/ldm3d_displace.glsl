// ldm3d_displace.glsl: the depth-displaced sphere, shared by TouchDesigner's GLSL MAT
// (td_project/glsl/) and ldm3d-bridge's reference renderer (preview, export-mesh).
//
// Texture coordinates follow OpenGL and TouchDesigner: u 0..1 left to right across
// the equirectangular image, v 0..1 from its bottom row to its top row.
// The viewer stands at the origin; u = 0.5, v = 0.5 is straight ahead (-Z), +Y is up,
// u grows to the viewer's right.
//
// Depth is LDM3D's relative inverse depth in 0..1 (1 = nearest). As in the LDM3D paper,
// 0.5 leaves a vertex on the sphere of radius `baseRadius`; toward 1 pulls it toward the
// viewer, toward 0 pushes it away: radius = baseRadius * (1 - strength * (depth - 0.5)),
// never below 5 % of baseRadius.

const float LDM3D_PI = 3.14159265358979;

vec3 ldm3dDirection(vec2 uv)
{
    float lon = (uv.x - 0.5) * 2.0 * LDM3D_PI;
    float lat = (uv.y - 0.5) * LDM3D_PI;
    return vec3(cos(lat) * sin(lon), sin(lat), -cos(lat) * cos(lon));
}

float ldm3dRadius(float depth, float baseRadius, float strength)
{
    return baseRadius * max(0.05, 1.0 - strength * (depth - 0.5));
}

// Where to read the depth of the vertex at `uv`. The seam's two vertex columns (u = 0 and
// u = 1) both read at u = 0, so they land on the same point and the 0°/360° seam closes
// whatever the sampler's extend mode. All vertices of a pole row read one texel, so each
// pole stays a single point.
vec2 ldm3dDepthCoord(vec2 uv, vec2 depthSize)
{
    float halfTexel = 0.5 / depthSize.y;
    if (uv.y <= 0.0) return vec2(0.5, halfTexel);
    if (uv.y >= 1.0) return vec2(0.5, 1.0 - halfTexel);
    return vec2(fract(uv.x), uv.y);
}

vec3 ldm3dDisplace(vec2 uv, sampler2D depthTex, float baseRadius, float strength)
{
    vec2 size = vec2(textureSize(depthTex, 0));
    float depth = textureLod(depthTex, ldm3dDepthCoord(uv, size), 0.0).r;
    return ldm3dDirection(uv) * ldm3dRadius(depth, baseRadius, strength);
}
