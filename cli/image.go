package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mailcow-ha/mailcow-ha/agent/config"
	"github.com/mailcow-ha/mailcow-ha/agent/hcloud"
	"github.com/mailcow-ha/mailcow-ha/imagebuild"
	"github.com/mailcow-ha/mailcow-ha/mailcowstub/deploy"
	"github.com/mailcow-ha/mailcow-ha/mailcowtree"
	"github.com/mailcow-ha/mailcow-ha/mailservers"
)

const imageUsage = `Usage:
  mailcow-ha image latest [--channel stable|testing] [--selector LABELS] [--endpoint URL] [--token-file FILE]
      print the id of the newest appliance snapshot of the channel (default stable)
  mailcow-ha image build-local [--top DIR] [--bin DIR] [--out DIR] [--force]
      build the local QEMU image (mmdebstrap, mkfs.ext4 -d, qcow2), or reuse the one with the same input hash
  mailcow-ha image payload --target hetzner|local --out DIR [--top DIR] [--bin DIR]
      assemble what the provisioning steps work from (packer uploads it on Hetzner)
  mailcow-ha image mailservers [--top DIR]
      make the root file system of the image with Debian's postfix and dovecot (tests), or reuse the cached one
`

// Image runs the image subcommands.
func Image(ctx context.Context, args []string, stdio Stdio) int {
	if len(args) == 0 {
		fmt.Fprint(stdio.Stderr, imageUsage)
		return ExitUsage
	}
	switch args[0] {
	case "latest":
		return imageLatest(ctx, args[1:], stdio)
	case "build-local":
		return imageBuildLocal(ctx, args[1:], stdio)
	case "payload":
		return imagePayload(ctx, args[1:], stdio)
	case "mailservers":
		return imageMailservers(ctx, args[1:], stdio)
	case "-h", "--help", "help":
		fmt.Fprint(stdio.Stdout, imageUsage)
		return ExitOK
	}
	fmt.Fprintf(stdio.Stderr, "mailcow-ha image: unknown command %q\n\n%s", args[0], imageUsage)
	return ExitUsage
}

// imageInputs reads the common flags of build-local and payload. A local image's inputs include mailcow's release
// tree (mailcowtree.Dir: ../shared/mailcow's tarball, or a clone checked against the pinned commit) and the mail
// servers' root file system (made in TOP/build/cache/mailservers when missing).
func imageInputs(fs *flag.FlagSet, stdio Stdio) func(ctx context.Context, target imagebuild.Target) (imagebuild.Inputs, error) {
	top := fs.String("top", ".", "the repository's top directory")
	bin := fs.String("bin", "", "the built binaries (default TOP/bin, as make build leaves them)")
	return func(ctx context.Context, target imagebuild.Target) (imagebuild.Inputs, error) {
		t, err := filepath.Abs(*top)
		if err != nil {
			return imagebuild.Inputs{}, err
		}
		b := *bin
		if b == "" {
			b = filepath.Join(t, "bin")
		}
		in := imagebuild.Inputs{Top: t, BinDir: b}
		if in.Version, err = imagebuild.BinaryVersion(filepath.Join(b, "mailcow-ha")); err != nil {
			return in, err
		}
		if target == imagebuild.Local {
			if in.MailcowTree, err = mailcowtree.Dir(ctx, t); err != nil {
				return in, err
			}
			in.MailServers, err = mailservers.RootFS(ctx, mailservers.Inputs{}, mailservers.CacheDir(t), stdio.Stdout)
		}
		return in, err
	}
}

func imageBuildLocal(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("image build-local", "image build-local [--top DIR] [--bin DIR] [--out DIR] [--force]", stdio)
	inputs := imageInputs(fs, stdio)
	out := fs.String("out", "", "images go to OUT/<hash>/ (default TOP/build/image)")
	cache := fs.String("deb-cache", "", "downloaded .debs kept between builds (default TOP/build/cache/debs)")
	force := fs.Bool("force", false, "build even when an image with the same input hash exists")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	in, err := inputs(ctx, imagebuild.Local)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image build-local:", err)
		return ExitUsage
	}
	im, err := imagebuild.BuildLocal(ctx, imagebuild.LocalOptions{Inputs: in, Out: *out, DebCache: *cache, Force: *force, Log: stdio.Stdout,
		Save: imagebuild.Savers{Stub: deploy.SaveStub, MailServers: deploy.SaveMailServers}})
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image build-local:", err)
		return ExitFailure
	}
	fmt.Fprintln(stdio.Stdout, im.Dir)
	return ExitOK
}

func imagePayload(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("image payload", "image payload --target hetzner|local --out DIR [--top DIR] [--bin DIR]", stdio)
	inputs := imageInputs(fs, stdio)
	target := fs.String("target", "hetzner", "hetzner (packer) or local (mmdebstrap)")
	out := fs.String("out", "", "the payload folder to create (must not exist)")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	t := imagebuild.Target(*target)
	if (t != imagebuild.Hetzner && t != imagebuild.Local) || *out == "" {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image payload: --target hetzner|local and --out DIR are required")
		return ExitUsage
	}
	in, err := inputs(ctx, t)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image payload:", err)
		return ExitUsage
	}
	if _, err := in.WritePayload(*out, t, imagebuild.Savers{Stub: deploy.SaveStub, MailServers: deploy.SaveMailServers}); err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image payload:", err)
		return ExitFailure
	}
	fmt.Fprintln(stdio.Stdout, *out)
	return ExitOK
}

// imageMailservers makes (or finds) the mail servers' root file system tarball; make test runs it beside the other
// tiers so that the test that imports it finds it cached.
func imageMailservers(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("image mailservers", "image mailservers [--top DIR]", stdio)
	top := fs.String("top", ".", "the repository's top directory (the tarball goes to TOP/build/cache/mailservers)")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	t, err := filepath.Abs(*top)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image mailservers:", err)
		return ExitUsage
	}
	path, err := mailservers.RootFS(ctx, mailservers.Inputs{}, mailservers.CacheDir(t), stdio.Stdout)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image mailservers:", err)
		return ExitFailure
	}
	fmt.Fprintln(stdio.Stdout, path)
	return ExitOK
}

func imageLatest(ctx context.Context, args []string, stdio Stdio) int {
	fs := newFlags("image latest", "image latest [--channel stable|testing] [--selector LABELS] [--endpoint URL] [--token-file FILE]", stdio)
	channel := fs.String("channel", "stable", "the release channel (label channel=...): a testing build is picked only when asked for")
	selector := fs.String("selector", "", "label selector of the snapshots instead (default app=mailcow-ha,channel=CHANNEL)")
	endpoint := fs.String("endpoint", envOr("HCLOUD_ENDPOINT", "https://api.hetzner.cloud/v1"), "API endpoint (default $HCLOUD_ENDPOINT)")
	tokenFile := fs.String("token-file", "", "file with the API token, mode 0600 (default: $HCLOUD_TOKEN)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if code, done := parseFlags(fs, args, stdio); done {
		return code
	}
	token := os.Getenv("HCLOUD_TOKEN")
	if *tokenFile != "" {
		s, err := config.SecretFiles{Owner: os.Geteuid()}.ReadSecret(*tokenFile)
		if err != nil {
			fmt.Fprintln(stdio.Stderr, "mailcow-ha image latest:", err)
			return ExitUsage
		}
		token = s.Reveal()
	}
	if token == "" {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image latest: no API token: set HCLOUD_TOKEN or use --token-file")
		return ExitUsage
	}
	c, err := hcloud.New(hcloud.Options{Endpoint: *endpoint, Token: token})
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image latest:", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	sel := *selector
	if sel == "" {
		sel = hcloud.AppSelector + ",channel=" + *channel
	}
	img, err := c.LatestImage(ctx, sel)
	if err != nil {
		fmt.Fprintln(stdio.Stderr, "mailcow-ha image latest:", err)
		return ExitFailure
	}
	fmt.Fprintln(stdio.Stdout, img.ID)
	return ExitOK
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
