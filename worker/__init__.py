"""The box-resident worker: load balancer, Docker and health-check steps."""
