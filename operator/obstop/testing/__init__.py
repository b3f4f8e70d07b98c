"""What tests, the sandbox and users' own tests run against: the obshell simulator (`obstop.testing.obshell_sim`)
and the emulated Kubernetes API server. Nothing here is imported by the operator at run time."""
