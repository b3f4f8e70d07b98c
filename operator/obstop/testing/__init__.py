"""The test kit: what this project's tests, the sandbox and users' own tests run against. The obshell simulator
(`obstop.testing.obshell_sim`), a real local control plane (`obstop.testing.controlplane`: etcd + kube-apiserver),
a fault-injecting proxy in front of it (`obstop.testing.apiproxy`), the whole loop (`obstop.testing.stack.Stack`)
and the pollers (`obstop.testing.waiting`). Installed with the `testing` extra; never in the controller image, and
never imported by the operator at run time (README: "What is in the package and the image")."""
