//! Who a service runs as and within which limits: `limits`, `umask`, `groups`, `group` and
//! `user`, applied in the child between fork and exec.
//!
//! Owns: the order (limits while still privileged, so a raised hard limit is allowed; then the
//! umask; then the supplementary groups, the group, and the user last, since after `setuid` the
//! others are no longer permitted) and the messages a failed step becomes. A step's failure
//! travels back through the exec-error pipe `std::process::Command` already keeps (it carries
//! one `i32`): the errno is tagged with which step failed, so the daemon logs "setuid(65534):
//! Operation not permitted", not a bare errno.
//! Must never: allocate or look anything up in the child: every value is prepared before fork,
//! ids are numeric.

use std::io;

use crate::wire::config::{Launch, Limit, Resource};

const TAG: i32 = 1 << 28;
const STEP_SHIFT: u32 = 20;
const INDEX_SHIFT: u32 = 12;
const ERRNO_MASK: i32 = (1 << INDEX_SHIFT) - 1;
const INDEX_MASK: i32 = (1 << (STEP_SHIFT - INDEX_SHIFT)) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
enum Step {
    Limit = 1,
    Groups = 2,
    Gid = 3,
    Uid = 4,
}

/// Everything the child applies, prepared (allocated) before fork.
#[derive(Debug, Default)]
pub struct Prepared {
    limits: Vec<Limit>,
    umask: Option<libc::mode_t>,
    groups: Option<Vec<libc::gid_t>>,
    gid: Option<libc::gid_t>,
    uid: Option<libc::uid_t>,
}

impl Prepared {
    /// What `launch` asks for; `None` when it asks nothing.
    pub fn new(launch: &Launch) -> Option<Prepared> {
        let p = Prepared {
            // Only the first 256 can be told apart in an error; more would be a strange config.
            limits: launch.limits.iter().take(256).copied().collect(),
            umask: launch.umask.map(|m| m as libc::mode_t),
            groups: launch.groups.clone(),
            gid: launch.group,
            uid: launch.user,
        };
        let nothing = p.limits.is_empty()
            && p.umask.is_none()
            && p.groups.is_none()
            && p.gid.is_none()
            && p.uid.is_none();
        (!nothing).then_some(p)
    }

    /// Applies everything, in order.
    ///
    /// # Safety
    ///
    /// Only in the child between fork and exec: it changes the process's identity. It makes only
    /// async-signal-safe calls on prepared data and allocates nothing.
    pub unsafe fn apply(&self) -> io::Result<()> {
        for (i, l) in self.limits.iter().enumerate() {
            let lim = libc::rlimit {
                rlim_cur: l.soft.map_or(libc::RLIM_INFINITY, |v| v as libc::rlim_t),
                rlim_max: l.hard.map_or(libc::RLIM_INFINITY, |v| v as libc::rlim_t),
            };
            // SAFETY: a pointer to a live rlimit on the stack.
            if unsafe { libc::setrlimit(resource(l.resource), &lim) } != 0 {
                return Err(failed(Step::Limit, i));
            }
        }
        if let Some(mask) = self.umask {
            // SAFETY: umask cannot fail.
            unsafe { libc::umask(mask) };
        }
        // Without a list, a user switch from root drops reapd's own supplementary groups (as
        // std and su do), so the service does not keep root's groups.
        let empty: [libc::gid_t; 0] = [];
        // SAFETY: geteuid cannot fail.
        let groups = match (&self.groups, self.uid) {
            (Some(g), _) => Some(g.as_slice()),
            (None, Some(_)) if unsafe { libc::geteuid() } == 0 => Some(&empty[..]),
            (None, _) => None,
        };
        if let Some(g) = groups {
            // SAFETY: a pointer to `g.len()` gids that live as long as the call.
            if unsafe { libc::setgroups(g.len() as _, g.as_ptr()) } != 0 {
                return Err(failed(Step::Groups, 0));
            }
        }
        if let Some(gid) = self.gid {
            // SAFETY: plain system call.
            if unsafe { libc::setgid(gid) } != 0 {
                return Err(failed(Step::Gid, 0));
            }
        }
        if let Some(uid) = self.uid {
            // SAFETY: plain system call.
            if unsafe { libc::setuid(uid) } != 0 {
                return Err(failed(Step::Uid, 0));
            }
        }
        Ok(())
    }
}

/// The error a step returns from the child: its errno, tagged with the step.
fn failed(step: Step, index: usize) -> io::Error {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0) & ERRNO_MASK;
    let index = (index as i32) & INDEX_MASK;
    io::Error::from_raw_os_error(
        TAG | ((step as i32) << STEP_SHIFT) | (index << INDEX_SHIFT) | errno,
    )
}

/// What a failed spawn's error means, when a step of [`Prepared::apply`] failed.
pub fn explain(e: &io::Error, launch: &Launch) -> Option<String> {
    let code = e.raw_os_error()?;
    if code & TAG == 0 {
        return None;
    }
    let errno = io::Error::from_raw_os_error(code & ERRNO_MASK);
    let index = ((code >> INDEX_SHIFT) & INDEX_MASK) as usize;
    let what = match (code & !TAG) >> STEP_SHIFT {
        1 => {
            let l = launch.limits.get(index)?;
            let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
            let hint = if errno.raw_os_error() == Some(libc::EPERM) {
                "; a hard limit can only be raised with CAP_SYS_RESOURCE, and nofile never above \
                 the kernel's fs.nr_open"
            } else {
                "; the soft limit must not exceed the hard limit"
            };
            format!(
                "cannot set limit {} to soft {}, hard {}: {errno}{hint}",
                l.resource.name(),
                show(l.soft),
                show(l.hard)
            )
        }
        2 => format!(
            "cannot set supplementary groups {:?}: {errno} (only root may)",
            launch.groups.clone().unwrap_or_default()
        ),
        3 => format!(
            "cannot switch to group {}: {errno} (setgid; only root may)",
            launch.group.unwrap_or(0)
        ),
        4 => format!(
            "cannot switch to user {}: {errno} (setuid; {})",
            launch.user.unwrap_or(0),
            if errno.raw_os_error() == Some(libc::EAGAIN) {
                "the user has reached its process limit, nproc"
            } else {
                "only root may"
            }
        ),
        _ => return None,
    };
    Some(what)
}

/// `setrlimit`'s resource type: glibc has its own, musl an int.
#[cfg(target_env = "gnu")]
type ResourceId = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type ResourceId = libc::c_int;

fn resource(r: Resource) -> ResourceId {
    match r {
        Resource::As => libc::RLIMIT_AS,
        Resource::Core => libc::RLIMIT_CORE,
        Resource::Cpu => libc::RLIMIT_CPU,
        Resource::Data => libc::RLIMIT_DATA,
        Resource::Fsize => libc::RLIMIT_FSIZE,
        Resource::Locks => libc::RLIMIT_LOCKS,
        Resource::Memlock => libc::RLIMIT_MEMLOCK,
        Resource::Msgqueue => libc::RLIMIT_MSGQUEUE,
        Resource::Nice => libc::RLIMIT_NICE,
        Resource::Nofile => libc::RLIMIT_NOFILE,
        Resource::Nproc => libc::RLIMIT_NPROC,
        Resource::Rtprio => libc::RLIMIT_RTPRIO,
        Resource::Sigpending => libc::RLIMIT_SIGPENDING,
        Resource::Stack => libc::RLIMIT_STACK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tagged_error_says_which_step_failed() {
        let launch = Launch {
            user: Some(65534),
            limits: vec![
                Limit {
                    resource: Resource::Core,
                    soft: Some(0),
                    hard: Some(0),
                },
                Limit {
                    resource: Resource::Nofile,
                    soft: Some(10),
                    hard: None,
                },
            ],
            ..Launch::default()
        };
        let code = TAG | (1 << STEP_SHIFT) | (1 << INDEX_SHIFT) | libc::EPERM;
        let msg = explain(&io::Error::from_raw_os_error(code), &launch).unwrap();
        assert!(
            msg.starts_with("cannot set limit nofile to soft 10, hard unlimited: "),
            "{msg}"
        );
        assert!(msg.contains("CAP_SYS_RESOURCE"), "{msg}");
        let code = TAG | (4 << STEP_SHIFT) | libc::EPERM;
        let msg = explain(&io::Error::from_raw_os_error(code), &launch).unwrap();
        assert!(msg.starts_with("cannot switch to user 65534: "), "{msg}");
        assert_eq!(
            explain(&io::Error::from_raw_os_error(libc::ENOENT), &launch),
            None
        );
    }
}
