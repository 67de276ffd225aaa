#version 330 core
// Reference renderer: an object's mesh (bridge/output/meshes.py) placed in the world by uModel
// (bridge/contract/placement.py, Placement.matrix scaled by the sphere's base radius).
in vec3 in_position;
in vec3 in_color;
uniform mat4 uViewProj;
uniform mat4 uModel;
out vec3 vColor;

void main()
{
    vColor = in_color;
    gl_Position = uViewProj * uModel * vec4(in_position, 1.0);
}
