# whpg-ha %post: the state directory; the service is neither enabled nor started (configure
# /etc/whpg-ha/whpg-ha.toml first). No systemd running (a container, a chroot): nothing to reload.
install -d -m 0700 -o root -g root /var/lib/whpg-ha
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
