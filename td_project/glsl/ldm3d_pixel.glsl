// GLSL MAT pixel shader (TouchDesigner): the world's colour from the RGB Cross TOP.
uniform sampler2D sRgb;         // Samplers page: the rgb Cross TOP
uniform sampler2D sPreviewRgb;  // Samplers page: the preview slot's rgb (Movie File In TOP)
uniform float uBrightness;      // Vectors page: 1, faded to 0 by the extension for Blackout
uniform float uForming;         // Vectors page: how much of the forming preview covers the world

in Vertex {
    vec2 texCoord;
} iVert;

layout(location = 0) out vec4 fragColor[TD_NUM_COLOR_BUFFERS];

void main()
{
    TDCheckDiscard();
    vec3 rgb = texture(sRgb, iVert.texCoord).rgb;
    if (uForming > 0.0) {
        rgb = mix(rgb, texture(sPreviewRgb, iVert.texCoord).rgb, uForming);
    }
    vec4 color = vec4(rgb * uBrightness, 1.0);
    fragColor[0] = TDOutputSwizzle(color);
}
