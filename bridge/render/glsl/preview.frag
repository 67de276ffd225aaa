#version 330 core
in vec2 vUv;
in vec3 vPosition;
uniform sampler2D uRgb;
out vec4 fragColor;

void main()
{
    fragColor = vec4(texture(uRgb, vUv).rgb, 1.0);
}
