"""What tests, the sandbox and users' own tests run against: the obshell simulator (`obstop.testing.obshell_sim`),
a real local control plane (`obstop.testing.controlplane`: etcd + kube-apiserver) and a fault-injecting proxy in
front of it (`obstop.testing.apiproxy`). Nothing here is imported by the operator at run time."""
