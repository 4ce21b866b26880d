// Command etcd is etcd's own server (go.etcd.io/etcd/server/v3/etcdmain) at the
// version kube-apiserver's release pins, built from the Go module proxy: Debian's
// etcd 3.4 is too old for the apiserver the tests run.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
