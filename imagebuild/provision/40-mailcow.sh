#!/bin/bash
# mailcow: both paths first check that Debian's Docker and Compose are new enough for mailcow and for the
# override (the manifest's docker_min and compose_min). On Hetzner, clone the pinned release, generate its
# configuration without prompts and pull the images, so that a new node starts mailcow without a download. Locally
# no registry or GitHub is reachable: the release tree comes in the payload, and the stub image and the mail
# servers' image (Debian's postfix and dovecot) as `docker save` tarballs, loaded at first boot
# (mailcow-ha-images.service). Both: the nginx snippets of the sign-up portal and of
# the health API.
set -euo pipefail
dir=$MCHA_MAILCOW_DIR
least() { # least PACKAGE MIN: the installed Debian package is at least version MIN (upstream part compared)
	local have
	if ! have=$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null) || [[ -z $have ]]; then
		echo "mailcow: $1 is not installed; mailcow-ha needs at least $2 (imagebuild/manifest.toml)" >&2
		exit 1
	fi
	have=${have#*:}
	if ! dpkg --compare-versions "${have%%[-+]*}" ge "$2"; then
		echo "mailcow: $1 is $have; mailcow-ha needs at least $2 (imagebuild/manifest.toml)" >&2
		exit 1
	fi
	echo "mailcow: $1 $have (at least $2)"
}
least docker.io "$MCHA_DOCKER_MIN"
least docker-compose "$MCHA_COMPOSE_MIN"
if [[ $MCHA_TARGET == hetzner ]]; then
	if [[ ! -d $dir/.git ]]; then
		git clone --quiet --depth 1 --branch "$MCHA_MAILCOW_TAG" "$MCHA_MAILCOW_REPO" "$dir"
	fi
	# The tag must be the commit the manifest pins: a tag moved upstream is a release nobody reviewed.
	have=$(git -C "$dir" rev-parse HEAD)
	if [[ $have != "$MCHA_MAILCOW_COMMIT" ]]; then
		echo "mailcow: $dir ($MCHA_MAILCOW_TAG) is at commit $have, the manifest pins $MCHA_MAILCOW_COMMIT" >&2
		exit 1
	fi
	cd "$dir"
	# A throwaway configuration, only to pull the images: its generated secrets must not ship in a snapshot that
	# every node of every cluster boots. The cluster's own mailcow.conf is made once per cluster (docs/image.md).
	if [[ ! -f mailcow.conf ]]; then
		MAILCOW_HOSTNAME=mail.image.invalid MAILCOW_TZ=Etc/UTC MAILCOW_BRANCH=master SKIP_CLAMD=n FORCE=y \
			./generate_config.sh </dev/null >/dev/null
	fi
	systemctl start docker
	docker compose pull --quiet
	rm -f mailcow.conf .env
else
	# The same release tree, from the payload (mailcowtree: ../shared/mailcow's tarball or a clone, both checked
	# against the pinned commit), with its link .env → mailcow.conf; the agent writes mailcow.conf at boot.
	install -d -m 0755 "$dir"
	cp -a "$MCHA_PAYLOAD/mailcow/tree/." "$dir/"
	install -D -m 0644 "$MCHA_PAYLOAD/images/mailcow-stub.tar" "$MCHA_STUB_IMAGES"
	# The mail servers' image beside it: mailcow-ha-images.service loads every tarball there.
	install -D -m 0644 "$MCHA_PAYLOAD/images/mailservers.tar" "$(dirname "$MCHA_STUB_IMAGES")/mailservers.tar"
fi
# The release the tree holds, as `mailcow-ha mailcow update` records it (agent/release: RecordFile), and its files
# with their hashes (ManifestFile, sha256sum's format): a file that a new release does not change is not read again.
printf '{"tag":"%s","commit":"%s"}\n' "$MCHA_MAILCOW_TAG" "$MCHA_MAILCOW_COMMIT" >"$dir/.mailcow-ha-release"
(cd "$dir" && find . -path ./.git -prune -o -type f ! -name .mailcow-ha-release ! -name .mailcow-ha-files -print0 |
	sort -z | xargs -0 -r sha256sum) >"$dir/.mailcow-ha-files"
install -D -m 0644 "$MCHA_PAYLOAD/mailcow/site.signup.custom" "$dir/data/conf/nginx/site.signup.custom"
install -D -m 0644 "$MCHA_PAYLOAD/mailcow/site.mailcow-ha.custom" "$dir/data/conf/nginx/site.mailcow-ha.custom"
