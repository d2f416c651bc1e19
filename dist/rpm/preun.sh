# whpg-ha %preun: on erase (not upgrade), stop and disable the service. An upgrade never restarts
# it: a restart hands the VIP to the peer, so the operator restarts when it suits.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now whpg-ha.service >/dev/null 2>&1 || :
fi
