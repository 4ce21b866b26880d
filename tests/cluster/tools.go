//go:build tools

// Package cluster pins the control plane the tests run: kube-apiserver and
// kube-controller-manager from k8s.io/kubernetes, and etcd (./etcd), all built
// from the Go module proxy by build.sh.
package cluster

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
