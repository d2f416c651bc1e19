# whpg-ha %postun: reload the unit files; on erase remove the state directory only when it is
# empty (a journal with entries stays), and the directories the package filled (rpm owns only
# the files in them; a changed configuration stays as whpg-ha.toml.rpmsave).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 0 ]; then
    rmdir /var/lib/whpg-ha/journal 2>/dev/null || :
    rmdir /var/lib/whpg-ha 2>/dev/null || :
    rmdir /usr/share/doc/whpg-ha/examples /usr/share/doc/whpg-ha /etc/whpg-ha 2>/dev/null || :
fi
