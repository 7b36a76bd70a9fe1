"""dev-agent core: engine, sessions, policies, model access."""
