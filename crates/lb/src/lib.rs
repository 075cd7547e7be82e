//! corral's load balancer: L4 (TCP) and L7 (HTTP/1.1) proxying, the balancing algorithms,
//! health checks. It does not know where backends come from.
