"""The hub's HTTP face: a role-scoped REST API, the live alert stream and the web UI."""
