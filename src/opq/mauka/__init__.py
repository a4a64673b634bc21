"""OPQ Mauka: the analysis plugin host and its plugins, turning events and measurements into incidents."""
