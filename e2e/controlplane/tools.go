//go:build tools

// Package tools pins the Kubernetes commands this module builds, so that `go mod tidy` keeps
// their dependencies in go.mod and go.sum. scripts/controlplane.sh builds them with
// `go build k8s.io/kubernetes/cmd/<name>` from inside this module.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
