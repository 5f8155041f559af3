#!/bin/bash
# mailcow: on Hetzner, clone the pinned release, generate its configuration without prompts, install Docker
# Compose v2 and pull the images, so that a new node starts mailcow without a download. Locally no registry or
# GitHub is reachable: the stub images come as a `docker save` tarball, loaded at first boot
# (mailcow-ha-images.service). Both: the nginx snippets of the sign-up portal and of the health API.
set -euo pipefail
dir=$MCHA_MAILCOW_DIR
if [[ $MCHA_TARGET == hetzner ]]; then
	plugin=/usr/local/lib/docker/cli-plugins/docker-compose
	if ! docker compose version 2>/dev/null | grep -q "${MCHA_COMPOSE_VERSION#v}"; then
		url="https://github.com/docker/compose/releases/download/$MCHA_COMPOSE_VERSION/docker-compose-linux-x86_64"
		install -d /usr/local/lib/docker/cli-plugins
		curl -fsSL --retry 5 -o "$plugin.tmp" "$url"
		curl -fsSL --retry 5 -o "$plugin.sha256" "$url.sha256"
		(cd "$(dirname "$plugin")" && echo "$(cut -d' ' -f1 "$plugin.sha256")  docker-compose.tmp" | sha256sum -c -)
		chmod 0755 "$plugin.tmp" && mv "$plugin.tmp" "$plugin" && rm -f "$plugin.sha256"
	fi
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
	install -d -m 0755 "$dir"
	install -D -m 0644 "$MCHA_PAYLOAD/images/mailcow-stub.tar" "$MCHA_STUB_IMAGES"
fi
install -D -m 0644 "$MCHA_PAYLOAD/mailcow/site.signup.custom" "$dir/data/conf/nginx/site.signup.custom"
install -D -m 0644 "$MCHA_PAYLOAD/mailcow/site.mailcow-ha.custom" "$dir/data/conf/nginx/site.mailcow-ha.custom"
