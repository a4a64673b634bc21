"""Where concrete parts of several services are wired together: the offline chain, the whole cloud."""
