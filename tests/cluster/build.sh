#!/usr/bin/env bash
# Builds the control plane the tests run (kube-apiserver, kube-controller-manager,
# etcd) from the Go module proxy, once: into a cache outside the working tree,
# keyed by this module's go.mod, go.sum and etcd/main.go, so a fresh clone on the
# same machine (CI) reuses it. Prints the directory holding the three binaries.
set -euo pipefail
cd "$(dirname "$0")"
key=$(cat go.mod go.sum etcd/main.go | sha256sum | cut -c1-16)
out="${XDG_CACHE_HOME:-$HOME/.cache}/dify-volume-init/cluster-$key"
if [ ! -x "$out/kube-apiserver" ] || [ ! -x "$out/kube-controller-manager" ] || [ ! -x "$out/etcd" ]; then
  release=$(awk '$1 == "k8s.io/kubernetes" {print $2}' go.mod)
  minor=${release#v1.}; minor=${minor%%.*}
  stamp="-X k8s.io/component-base/version.gitVersion=$release"
  stamp="$stamp -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  stamp="$stamp -X k8s.io/component-base/version.gitTreeState=clean"
  mkdir -p "$out.tmp"
  start=$(date +%s)
  echo "building the control plane ($release, etcd) into $out; the first time takes a while" >&2
  go build -buildvcs=false -trimpath -o "$out.tmp/" -ldflags "-s -w $stamp" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
  go build -buildvcs=false -trimpath -o "$out.tmp/etcd" -ldflags "-s -w" ./etcd
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "built in $(( $(date +%s) - start )) s; $(du -sh "$out" | cut -f1) in $out" >&2
fi
echo "$out"
