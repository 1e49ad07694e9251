//! Kubernetes for hoist's tests: [`envtest::Envtest`], the real control plane of
//! `tools/envtest.sh` (kube-apiserver, kube-controller-manager, kube-scheduler, etcd,
//! kwok), shared by the cluster tests.
//!
//! There is no stand-in API server any more: every cluster test that used one
//! (`FakeKubeApi`, an in-memory imitation) runs against the real control plane, which
//! shows what an imitation could not (server-side apply and field ownership,
//! defaulting, CRD validation, RBAC, the controllers' rollouts, the scheduler). What a
//! real server cannot show, the order of the requests within one operation (traffic
//! moved before a candidate shrinks), is pinned by the scripted kube mock tests in
//! `crates/targets/tests/kubernetes_client.rs`.

pub mod envtest;
