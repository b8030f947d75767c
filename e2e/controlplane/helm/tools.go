//go:build tools

// Package tools pins helm's command so that `go mod tidy` keeps its dependencies.
// scripts/controlplane.sh builds it with `go build helm.sh/helm/v3/cmd/helm` from this module.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
