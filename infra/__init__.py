"""The AWS CDK app of the control plane: one construct per deployable unit, a stack that wires and grants."""
