//! Commands run through the exec runner do not inherit the daemon's network capabilities.
//!
//! Each test gives one thread of the test process (capabilities and user ids are per thread in
//! Linux, and raw system calls change only the calling thread) the credentials of a daemon started
//! by systemd with `AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW`, then runs `cat
//! /proc/self/status` from that thread twice: with a plain `std::process::Command` (the control,
//! which shows what a child inherits) and through `whpg_ha::exec::run`.

use std::time::Duration;

use whpg_ha::exec::{run, PreparedCommand};

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const NET_CAPS: u64 = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW);

fn require_root(test: &str) -> bool {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root under CI=true");
    }
    eprintln!("SKIPPED {test}: not running as root");
    false
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn os_check(rc: libc::c_long, what: &str) {
    assert_eq!(rc, 0, "{what}: {}", std::io::Error::last_os_error());
}

/// Sets this thread's effective, permitted and inheritable sets (low 32 bits are enough here).
fn capset_thread(effective: u64, permitted: u64, inheritable: u64) {
    let header = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let split = |v: u64| [v as u32, (v >> 32) as u32];
    let (e, p, i) = (split(effective), split(permitted), split(inheritable));
    let data = [
        CapData {
            effective: e[0],
            permitted: p[0],
            inheritable: i[0],
        },
        CapData {
            effective: e[1],
            permitted: p[1],
            inheritable: i[1],
        },
    ];
    // SAFETY: capset reads the header and two CapData.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    os_check(rc, "capset");
}

fn raise_ambient(cap: u32) {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    os_check(rc.into(), "PR_CAP_AMBIENT_RAISE");
}

/// This thread's own capability sets, from the kernel's view of it.
fn thread_caps() -> Caps {
    Caps::parse(&std::fs::read_to_string("/proc/thread-self/status").expect("thread status"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Caps {
    inh: u64,
    prm: u64,
    eff: u64,
    amb: u64,
}

impl Caps {
    fn parse(status: &str) -> Caps {
        let field = |name: &str| {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in:\n{status}"));
            u64::from_str_radix(line[name.len()..].trim(), 16).expect("hex")
        };
        Caps {
            inh: field("CapInh:"),
            prm: field("CapPrm:"),
            eff: field("CapEff:"),
            amb: field("CapAmb:"),
        }
    }

    const NONE: Caps = Caps {
        inh: 0,
        prm: 0,
        eff: 0,
        amb: 0,
    };
}

/// What a plain `std::process::Command` child of this thread holds.
fn control_caps(as_nobody: Option<(u32, u32)>) -> Caps {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new("/bin/cat");
    command.arg("/proc/self/status");
    if let Some((uid, gid)) = as_nobody {
        command.uid(uid).gid(gid);
    }
    let out = command.output().expect("running cat");
    assert!(out.status.success(), "{out:?}");
    Caps::parse(&String::from_utf8_lossy(&out.stdout))
}

/// What a child started by the project's runner (as `user`, or the thread's own user) holds.
fn runner_caps(user: Option<&str>) -> Caps {
    let mut cmd = PreparedCommand::new(
        "commands.start",
        vec!["/bin/cat".into(), "/proc/self/status".into()],
        Duration::from_secs(10),
    );
    if let Some(user) = user {
        cmd = cmd.run_as(user);
    }
    // A runtime on this very thread, so the child is forked from it and inherits its credentials.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let outcome = runtime.block_on(run(&cmd)).expect("the runner runs cat");
    assert!(outcome.success(), "{outcome}");
    Caps::parse(&outcome.output.stdout)
}

/// Runs `body` on a fresh thread (its credential changes die with it) and returns its result.
fn on_own_thread<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(body).join().expect("the test thread")
}

fn nobody() -> (u32, u32) {
    let user = whpg_ha::exec::lookup_user("nobody").expect("user nobody exists");
    (user.uid, user.gid)
}

/// The case: the daemon runs as the database user (here `nobody`) with ambient
/// CAP_NET_ADMIN and CAP_NET_RAW, and starts a command as that same user (no user switch).
#[test]
fn a_command_run_as_the_daemons_own_user_drops_its_ambient_network_capabilities() {
    if !require_root("a_command_run_as_the_daemons_own_user_drops_its_ambient_network_capabilities")
    {
        return;
    }
    let (uid, gid) = nobody();
    let (daemon, control, child) = on_own_thread(move || {
        // SAFETY: raw system calls that change this thread's credentials only.
        unsafe {
            os_check(
                libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0).into(),
                "keepcaps",
            );
            let groups = [gid];
            os_check(
                libc::syscall(libc::SYS_setgroups, 1, groups.as_ptr()),
                "setgroups",
            );
            os_check(
                libc::syscall(libc::SYS_setresgid, gid, gid, gid),
                "setresgid",
            );
            os_check(
                libc::syscall(libc::SYS_setresuid, uid, uid, uid),
                "setresuid",
            );
        }
        capset_thread(NET_CAPS, NET_CAPS, NET_CAPS);
        raise_ambient(CAP_NET_ADMIN);
        raise_ambient(CAP_NET_RAW);
        (
            thread_caps(),
            control_caps(None),
            runner_caps(Some("nobody")),
        )
    });
    eprintln!(
        "daemon thread: {daemon:x?}\nplain Command child: {control:x?}\nrunner child: {child:x?}"
    );
    assert_eq!(
        daemon.amb, NET_CAPS,
        "the setup gave the thread ambient caps"
    );
    // The control: a child that is not cleaned holds the daemon's network capabilities.
    assert_eq!(
        control,
        Caps {
            inh: NET_CAPS,
            prm: NET_CAPS,
            eff: NET_CAPS,
            amb: NET_CAPS
        }
    );
    assert_eq!(
        child,
        Caps::NONE,
        "the runner's child must hold no capability"
    );
}

/// The daemon runs as root with ambient and inheritable network capabilities and switches to the
/// database user for the command.
#[test]
fn a_command_switched_from_root_to_a_user_holds_no_capability() {
    if !require_root("a_command_switched_from_root_to_a_user_holds_no_capability") {
        return;
    }
    let (control, child) = on_own_thread(move || {
        let own = thread_caps();
        capset_thread(own.eff, own.prm, NET_CAPS);
        raise_ambient(CAP_NET_ADMIN);
        raise_ambient(CAP_NET_RAW);
        (control_caps(Some(nobody())), runner_caps(Some("nobody")))
    });
    eprintln!("plain Command child (uid nobody): {control:x?}\nrunner child: {child:x?}");
    // setuid alone clears permitted, effective and ambient but keeps the inheritable set.
    assert_eq!(control.inh, NET_CAPS, "{control:x?}");
    assert_eq!(
        child,
        Caps::NONE,
        "the runner's child must hold no capability"
    );
}

/// A command run as root keeps what root gets at exec, but no ambient or inheritable set.
#[test]
fn a_command_run_as_root_inherits_no_ambient_or_inheritable_set() {
    if !require_root("a_command_run_as_root_inherits_no_ambient_or_inheritable_set") {
        return;
    }
    let (control, child) = on_own_thread(move || {
        let own = thread_caps();
        capset_thread(own.eff, own.prm, NET_CAPS);
        raise_ambient(CAP_NET_ADMIN);
        raise_ambient(CAP_NET_RAW);
        (control_caps(None), runner_caps(None))
    });
    eprintln!("plain Command child (root): {control:x?}\nrunner child (root): {child:x?}");
    assert_eq!(
        (control.inh, control.amb),
        (NET_CAPS, NET_CAPS),
        "{control:x?}"
    );
    assert_eq!((child.inh, child.amb), (0, 0), "{child:x?}");
    // Root keeps root's rights at exec (bounded by the daemon's bounding set).
    assert_eq!(child.eff, control.eff, "{child:x?}");
}
