"""Edge side: the site gateway agent and the site simulator."""
