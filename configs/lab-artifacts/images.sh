# shellcheck shell=bash
# The lab's images, packed as OCI layouts from binaries built here (sourced by scripts/lab-artifacts).
# Control-plane images are a static binary on an empty base, like distroless/static; kube-proxy and
# flannel also need iptables/nft/conntrack (and cp for flannel's init containers), which come from
# Debian packages unpacked into one shared layer. Layouts land under source/images/<name>/<tag>, the
# upstream names (registry host dropped) that `python -m k8s_ha bundle --images-source` looks up.

# Debian packages of the netfilter layer; apt resolves nothing here, so the list is complete.
NETFILTER_DEBS=(libc6 libgcc-s1 coreutils libacl1 libattr1 libselinux1 libpcre2-8-0 libgmp10
  iptables libip4tc2 libip6tc2 libxtables12 libnftnl11 libmnl0 libnetfilter-conntrack3 libnfnetlink0
  conntrack nftables libnftables1 libjansson4 libedit2 libbsd0 libmd0 libtinfo6 libxxhash0 libcap2)

image() { # image NAME:TAG [imagepack args...]
  local ref=$1; shift
  local out=$SRC/images/${ref/://}
  "$BIN/imagepack" -out "$out.tmp" -ref "registry.k8s.io/$ref" "$@"
  rm -rf "$out"; mv "$out.tmp" "$out"
}

build_netfilter_layer() {
  local dir=$CACHE/stage/netfilter; rm -rf "$dir"; mkdir -p "$dir/debs" "$dir/root"
  (cd "$dir/debs" && apt-get download "${NETFILTER_DEBS[@]}" >/dev/null)
  local deb; for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root"; done
  # Debian's postinst would set these alternatives; kube-proxy and flannel call iptables by name.
  local t; for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf xtables-nft-multi "$dir/root/usr/sbin/$t"
  done
  rm -rf "$dir/root/usr/share/doc" "$dir/root/usr/share/man" "$dir/root/usr/share/locale"
  # Debian's merged /usr: /bin, /sbin, /lib, /lib64 are links into /usr.
  for t in bin sbin lib lib64; do [ -e "$dir/root/$t" ] || ln -s "usr/$t" "$dir/root/$t"; done
  tar --sort=name --owner=0 --group=0 --mtime=@0 -C "$dir/root" -cf "$CACHE/stage/netfilter.tar" .
}

build_pause_at() { # TAG
  local src; src=$(cd "$CACHE/mod/kubernetes-$KUBERNETES_VERSION" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  mkdir -p "$CACHE/stage/pause-$1"
  gcc -Os -static -Wall -Werror -DVERSION="v$1-lab" -o "$CACHE/stage/pause-$1/pause" "$src/build/pause/linux/pause.c"
  strip "$CACHE/stage/pause-$1/pause"
}
build_pause() { build_pause_at "$PAUSE_VERSION"; }
build_pause_from() { build_pause_at "$UPGRADE_FROM_PAUSE_VERSION"; }

build_coredns_at() { # VERSION
  local v=$1; local dir=$CACHE/mod/coredns-$v
  builder "$dir" "github.com/coredns/coredns@v$v"
  (cd "$dir" && go build -ldflags "-s -w" -o "$CACHE/stage/coredns-$v" github.com/coredns/coredns)
}
build_coredns() { build_coredns_at "$COREDNS_VERSION"; }
build_coredns_from() { build_coredns_at "$UPGRADE_FROM_COREDNS_VERSION"; }

build_metrics_server() {
  local v=$METRICS_SERVER_VERSION; local dir=$CACHE/mod/metrics-server-$v
  builder "$dir" "sigs.k8s.io/metrics-server@v$v"
  (cd "$dir" && go build -ldflags "-s -w -X sigs.k8s.io/metrics-server/pkg/version.gitVersion=v$v" \
    -o "$CACHE/stage/metrics-server" sigs.k8s.io/metrics-server/cmd/metrics-server)
}

build_flannel() {
  local v=$FLANNEL_VERSION; local dir=$CACHE/mod/flannel-$v
  # flannel's go.mod asks for tencentcloud common v1.3.79, which the Go proxy refuses ("not
  # available"); v1.3.80, the next patch, is served (only flannel's tencentvpc backend uses it).
  local tc=github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common
  builder "$dir" "github.com/flannel-io/flannel@v$v" "$tc => $tc v1.3.80"
  # As upstream's Makefile on amd64: cgo for the UDP backend's C proxy, linked statically.
  (cd "$dir" && CGO_ENABLED=1 go build \
    -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=v$v -extldflags -static" \
    -o "$CACHE/stage/flanneld" github.com/flannel-io/flannel)
  # github.com/flannel-io/cni-plugin is not on the Go proxy; the same plugin's last home,
  # containernetworking/plugins v0.9.1 (plugins/meta/flannel), stands in for it in the lab.
  dir=$CACHE/mod/flannel-cni-0.9.1
  builder "$dir" "github.com/containernetworking/plugins@v0.9.1"
  (cd "$dir" && go build -ldflags "-s -w" -o "$CACHE/stage/flannel" github.com/containernetworking/plugins/plugins/meta/flannel)
}

# agnhost, Kubernetes' own e2e test image (k8s.io/kubernetes/test/images/agnhost), is not a stack
# image: the cluster tier's test Deployment runs its `netexec` HTTP server. Its tag is the module's
# test/images/agnhost/VERSION.
agnhost_version() {
  cat "$(cd "$CACHE/mod/kubernetes-$KUBERNETES_VERSION" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost/VERSION"
}

build_agnhost() {
  (cd "$CACHE/mod/kubernetes-$KUBERNETES_VERSION" && go build -tags providerless -ldflags "-s -w" \
    -o "$CACHE/stage/agnhost" k8s.io/kubernetes/test/images/agnhost)
}

pack_control_plane() { # KUBERNETES_VERSION PAUSE_TAG COREDNS_VERSION: the images kubeadm of that version pulls
  local k=$BIN/kubernetes-$1 tag=v$1 n
  for n in kube-apiserver kube-controller-manager kube-scheduler; do
    image "$n:$tag" -entrypoint "/usr/local/bin/$n" "$k/$n=/usr/local/bin/$n"
  done
  image "kube-proxy:$tag" -entrypoint /usr/local/bin/kube-proxy -layer-tar "$CACHE/stage/netfilter.tar" \
    "$k/kube-proxy=/usr/local/bin/kube-proxy"
  image "pause:$2" -entrypoint /pause -user 65535:65535 "$CACHE/stage/pause-$2/pause=/pause"
  image "coredns/coredns:v$3" -entrypoint /coredns -user 65532 "$CACHE/stage/coredns-$3=/coredns"
}

pack_images() {
  pack_control_plane "$KUBERNETES_VERSION" "$PAUSE_VERSION" "$COREDNS_VERSION"
  pack_control_plane "$KUBERNETES_UPGRADE_FROM" "$UPGRADE_FROM_PAUSE_VERSION" "$UPGRADE_FROM_COREDNS_VERSION"
  image "metrics-server/metrics-server:v$METRICS_SERVER_VERSION" -entrypoint /metrics-server -user 65532 \
    "$CACHE/stage/metrics-server=/metrics-server"
  image "e2e-test-images/agnhost:$(agnhost_version)" -entrypoint /agnhost -user 65532 "$CACHE/stage/agnhost=/agnhost"
  local f=$SRC/images/flannel-io
  "$BIN/imagepack" -out "$f/flannel/v$FLANNEL_VERSION" -ref "ghcr.io/flannel-io/flannel:v$FLANNEL_VERSION" \
    -entrypoint /opt/bin/flanneld -layer-tar "$CACHE/stage/netfilter.tar" "$CACHE/stage/flanneld=/opt/bin/flanneld"
  "$BIN/imagepack" -out "$f/flannel-cni-plugin/$FLANNEL_CNI_PLUGIN_VERSION" \
    -ref "ghcr.io/flannel-io/flannel-cni-plugin:$FLANNEL_CNI_PLUGIN_VERSION" \
    -layer-tar "$CACHE/stage/netfilter.tar" "$CACHE/stage/flannel=/flannel"
}

pack_images_marked() {
  rm -f "$CACHE"/stage/images-packed-*
  pack_images
  touch "$PACKED_MARK"
}

build_images() {
  timed "netfilter-layer" build_netfilter_layer
  timed "pause-$PAUSE_VERSION" build_pause "$CACHE/stage/pause-$PAUSE_VERSION/pause"
  timed "pause-$UPGRADE_FROM_PAUSE_VERSION" build_pause_from "$CACHE/stage/pause-$UPGRADE_FROM_PAUSE_VERSION/pause"
  timed "coredns-$COREDNS_VERSION" build_coredns "$CACHE/stage/coredns-$COREDNS_VERSION"
  timed "coredns-$UPGRADE_FROM_COREDNS_VERSION" build_coredns_from "$CACHE/stage/coredns-$UPGRADE_FROM_COREDNS_VERSION"
  timed "metrics-server-$METRICS_SERVER_VERSION" build_metrics_server
  timed "flannel-$FLANNEL_VERSION" build_flannel
  timed "agnhost-$KUBERNETES_VERSION" build_agnhost
  # Packed again whenever what goes into the layouts may have changed: this recipe or a version.
  local inputs; inputs=$(cat configs/lab-artifacts/images.sh configs/lab-artifacts/components.env | sha256sum)
  PACKED_MARK=$CACHE/stage/images-packed-${inputs:0:16}
  timed "images-packed" pack_images_marked "$PACKED_MARK"
}
