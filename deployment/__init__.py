"""The processes of one machine (workers and balancer), started and kept running."""
