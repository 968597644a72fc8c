package main

import (
	"archive/tar"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The images cri-tools' critest (v1.37.0, pkg/validate/consts.go) names,
// under the paths they have on their registries: the driver (tools/critest)
// maps gcr.io, registry.k8s.io and k8s.gcr.io to this registry in
// hosts.toml, so the image names the tests compare stay the real ones.
// Each is made of toybox like ToyboxRef; they differ where the tests look.
// Not made: test-image-digest (the test pins a digest of upstream bytes)
// and the nginx, httpd and nonewprivs images (real programs).
const criToolsRepo = "k8s-staging-cri-tools/"

// critestImages are the images for -critest, built on the toybox image's
// files. Each image config carries a label naming the image, so that no
// two of them (nor toybox:1 and pause:3.10) are one image by accident:
// an image's repo tags are those of every reference that pulled it, and
// the pull specs compare them. Only the test-image-tags tags are meant to
// be one image.
func critestImages(bin []byte, applets []string) ([]image, error) {
	files := hardLinked(toyboxFiles(bin, applets))
	var out []image
	add := func(cfg v1.Config, es []entry, refs ...string) error {
		cfg.Labels = map[string]string{"io.shimkeeper.test-image": refs[0]}
		img, err := newImage(es, cfg)
		if err != nil {
			return fmt.Errorf("image %s: %w", refs[0], err)
		}
		for _, r := range refs {
			out = append(out, image{r, img})
		}
		return nil
	}
	base := func(user string) v1.Config {
		return v1.Config{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}, WorkingDir: "/", User: user}
	}

	// critest's default container image (the driver's -test-images-file).
	if err := add(base(""), files, CritestToyboxRef); err != nil {
		return nil, err
	}
	// "with tag", "all kinds of references", "without tag", and the three
	// tags of one image.
	for _, refs := range [][]string{
		{"test-image-tag:test"}, {"test-image-tag:all"}, {"test-image-latest:latest"},
		{"test-image-tags:1", "test-image-tags:2", "test-image-tags:3"},
		{"test-image-1:latest"}, {"test-image-2:latest"}, {"test-image-3:latest"},
	} {
		for i := range refs {
			refs[i] = criToolsRepo + refs[i]
		}
		if err := add(base(""), files, refs...); err != nil {
			return nil, err
		}
	}
	// The image config's User, in its four forms (image.go: uid 1002,
	// www-data, uid 1003 with a group, www-data with a group).
	for _, u := range []struct{ ref, user string }{
		{"test-image-user-uid", "1002"},
		{"test-image-user-username", "www-data"},
		{"test-image-user-uid-group", "1003:1003"},
		{"test-image-user-username-group", "www-data:www-data"},
	} {
		if err := add(base(u.user), withUsers(files), criToolsRepo+u.ref+":latest"); err != nil {
			return nil, err
		}
	}
	// A user 1000 whose /etc/group makes it a member of group 50000
	// (security_context_linux.go, SupplementalGroupsPolicy).
	if err := add(base(""), withUsers(files), criToolsRepo+"test-image-predefined-group:latest"); err != nil {
		return nil, err
	}
	// registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9: one repository
	// here, so one image from two registries (image.go,
	// image_id_consistency.go).
	pauseCfg := v1.Config{Entrypoint: []string{"/pause"}, Env: []string{"PATH=/bin"}, WorkingDir: "/"}
	if err := add(pauseCfg, pauseFiles(bin), "pause:3.9"); err != nil {
		return nil, err
	}
	return out, nil
}

// CritestToyboxRef is toybox:1 with its applets hard links to
// /bin/toybox, as busybox's images have them: a spec that masks /bin/ls
// (runc binds /dev/null over the path, through a symlink onto its target)
// must not mask the shell too.
const CritestToyboxRef = "critest/toybox:1"

// hardLinked is files with each symlink to toybox in bin/ a hard link.
func hardLinked(files []entry) []entry {
	out := make([]entry, 0, len(files))
	for _, e := range files {
		if e.Type == tar.TypeSymlink && e.Link == "toybox" {
			e = entry{Name: e.Name, Type: tar.TypeLink, Mode: 0o755, Link: "bin/toybox"}
		}
		out = append(out, e)
	}
	return out
}

// withUsers is files with /etc/passwd and /etc/group listing www-data
// (33), user 1000 and group 50000 holding user 1000.
func withUsers(files []entry) []entry {
	out := make([]entry, 0, len(files))
	for _, e := range files {
		switch e.Name {
		case "etc/passwd":
			e.Data = []byte("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\n" +
				"user:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
		case "etc/group":
			e.Data = []byte("root:x:0:\nwww-data:x:33:\nuser:x:1000:\ngroup1:x:50000:user\nnogroup:x:65534:\n")
		}
		out = append(out, e)
	}
	return out
}
