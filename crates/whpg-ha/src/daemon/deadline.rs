//! The loop's one deadline, on a timerfd: it wakes the daemon once, at the deadline.
//!
//! tokio's timer wheel keeps a deadline 100 ms away in a 64 ms slot and wakes the runtime at the
//! slot boundary to cascade it, so every advert cycle cost two wake-ups. A timerfd armed for the
//! exact deadline costs one, which is most of the daemon's idle CPU.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

pub struct Deadline {
    fd: AsyncFd<OwnedFd>,
}

impl Deadline {
    pub fn new() -> io::Result<Deadline> {
        // SAFETY: plain syscall; the descriptor it returns is owned by the OwnedFd below.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new, valid descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd keeps the descriptor open and unchanged for the AsyncFd's lifetime.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Deadline { fd })
    }

    /// Resolves at `at` (at once if it has passed); never with `None`.
    pub async fn wait_until(&self, at: Option<Instant>) -> io::Result<()> {
        let Some(at) = at else {
            self.arm(Duration::ZERO)?;
            return std::future::pending().await;
        };
        let remaining = at.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            // Let the other tasks (the API, the observers) run before the loop goes round again.
            tokio::task::yield_now().await;
            return Ok(());
        }
        self.arm(remaining)?;
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // SAFETY: reads at most 8 bytes into a buffer of 8 bytes from our own descriptor.
            let n = unsafe {
                libc::read(
                    self.fd.get_ref().as_raw_fd(),
                    expirations.as_mut_ptr().cast(),
                    expirations.len(),
                )
            };
            if n == 8 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::WouldBlock {
                guard.clear_ready();
                continue;
            }
            return Err(error);
        }
    }

    /// Arm the timer `after` from now (zero disarms it).
    fn arm(&self, after: Duration) -> io::Result<()> {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid descriptor and a fully initialised itimerspec; the old value is not read.
        let rc = unsafe {
            libc::timerfd_settime(
                self.fd.get_ref().as_raw_fd(),
                0,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_at_the_deadline_not_before() {
        let deadline = Deadline::new().expect("timerfd");
        for ms in [1u64, 15, 40] {
            let start = Instant::now();
            let at = start + Duration::from_millis(ms);
            deadline.wait_until(Some(at)).await.expect("wait");
            let now = Instant::now();
            assert!(now >= at, "woke {:?} early", at - now);
            assert!(
                now - at < Duration::from_millis(50),
                "woke {:?} late",
                now - at
            );
        }
        // A deadline in the past resolves at once.
        let past = Instant::now() - Duration::from_millis(5);
        tokio::time::timeout(Duration::from_millis(100), deadline.wait_until(Some(past)))
            .await
            .expect("immediate")
            .expect("wait");
        // No deadline never resolves.
        assert!(
            tokio::time::timeout(Duration::from_millis(30), deadline.wait_until(None))
                .await
                .is_err()
        );
    }
}
