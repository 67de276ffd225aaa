#version 330 core
// Unlit vertex colour, as the sphere is unlit texture (preview.frag).
in vec3 vColor;
out vec4 fragColor;

void main()
{
    fragColor = vec4(vColor, 1.0);
}
