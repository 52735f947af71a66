// imagepack builds one linux/amd64 OCI image layout from local files, offline: the lab's images
// (kube-apiserver, pause, coredns...) are static binaries on an empty base, like distroless/static.
//
//	imagepack -out DIR -ref NAME:TAG -entrypoint /bin/x[,arg] [-user 65532] [-layer-tar T]... SRC=DST...
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// filesLayer packs SRC=DST pairs (0755 for executables) plus /etc/passwd and /etc/group with a
// nonroot user, as distroless does, so images that run as 65532 resolve their user.
func filesLayer(pairs []string) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	addDir := func(p string) error {
		for d := path.Dir(p); d != "/" && d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
			defer func(d string) { _ = tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, Typeflag: tar.TypeDir}) }(d)
		}
		return nil
	}
	write := func(dst string, data []byte, mode int64) error {
		if err := addDir(dst); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(dst, "/"), Mode: mode, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := write("/etc/passwd", []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), 0o644); err != nil {
		return nil, err
	}
	if err := write("/etc/group", []byte("root:x:0:\nnonroot:x:65532:\n"), 0o644); err != nil {
		return nil, err
	}
	for _, pair := range pairs {
		src, dst, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, fmt.Errorf("%q is not SRC=DST", pair)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		if err := write(dst, data, 0o755); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

func run() error {
	out := flag.String("out", "", "OCI layout directory to write")
	ref := flag.String("ref", "", "image reference recorded in the layout (org.opencontainers.image.ref.name)")
	entry := flag.String("entrypoint", "", "comma-separated entrypoint")
	user := flag.String("user", "", "user to run as")
	var layerTars multi
	flag.Var(&layerTars, "layer-tar", "an extra layer from a tar file (applied before the files)")
	flag.Parse()
	if *out == "" || *ref == "" {
		return fmt.Errorf("-out and -ref are required")
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, t := range layerTars {
		l, err := tarball.LayerFromFile(t, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return err
		}
	}
	l, err := filesLayer(flag.Args())
	if err != nil {
		return err
	}
	if img, err = mutate.AppendLayers(img, l); err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if *entry != "" {
		cf.Config.Entrypoint = strings.Split(*entry, ",")
	}
	cf.Config.User = *user
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	if err := os.RemoveAll(*out); err != nil {
		return err
	}
	p, err := layout.Write(*out, empty.Index)
	if err != nil {
		return err
	}
	tag := (*ref)[strings.LastIndex(*ref, ":")+1:]
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag,
		"io.containerd.image.name":          *ref,
	}))
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "imagepack:", err)
		os.Exit(1)
	}
}
