//go:build tools

// Package tools pins the commands this module builds, so that `go mod tidy` keeps their
// dependencies in go.mod and go.sum. scripts/controlplane.sh builds them all (and ./cmd/etcd) in
// one `go build` from inside this module. helm v3.21.4 is the newest helm whose k8s.io libraries
// are v0.36, the release kube-apiserver v1.36.3 pins, so both fit one build graph.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"

	_ "helm.sh/helm/v3/cmd/helm"
)
