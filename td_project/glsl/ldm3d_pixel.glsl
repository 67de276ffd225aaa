// GLSL MAT pixel shader (TouchDesigner): the world's colour from the RGB Cross TOP.
uniform sampler2D sRgb;      // Samplers page: the rgb Cross TOP
uniform float uBrightness;   // Vectors page: 1, faded to 0 by the extension for Blackout

in Vertex {
    vec2 texCoord;
} iVert;

layout(location = 0) out vec4 fragColor[TD_NUM_COLOR_BUFFERS];

void main()
{
    TDCheckDiscard();
    vec4 color = vec4(texture(sRgb, iVert.texCoord).rgb * uBrightness, 1.0);
    fragColor[0] = TDOutputSwizzle(color);
}
