"""Tools the agent can call, each confined to the workspace and guarded by policy."""
