// Command etcd is the real etcd server, etcd's own `main` (a one-line call into etcdmain),
// built at the go.etcd.io/etcd/server/v3 version that k8s.io/kubernetes v1.36.3 requires.
//
// Why not the upstream binary's module (go.etcd.io/etcd/v3): it is a separate module with its
// own dependency versions, which would have to be reconciled with Kubernetes's in one build
// graph (or built as a second module). etcdmain is already in this module's graph, so the binary
// costs one more link, takes the usual etcd flags, and is exactly the etcd version the apiserver
// is tested against upstream (v3.6.x). An embed-based wrapper would need its own flag parsing
// and would drift from how a real etcd is run.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
