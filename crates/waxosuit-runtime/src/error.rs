//! The one error type of the runtime.

use std::fmt;
use std::time::Duration;

use crate::{ActorKey, MAX_BINDING_NAME_LEN, MAX_NAMESPACE_LEN, MAX_OPERATION_NAME_LEN, Name};

/// Everything that can go wrong while loading or calling an actor.
///
/// Callers branch on the variant (or on [`RuntimeError::kind`]); the
/// `Display` text is meant for operators and may change between releases.
///
/// An instance that trapped, hit a limit or broke the waPC protocol is
/// dropped, never reused, and replaced by a fresh one on demand: the actor
/// itself stays usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The actor key is not a 56-character `M…` module public key.
    #[error(
        "{key:?} is not an actor key: expected the 56-character module public key \
         starting with 'M' (base32, A-Z and 2-7)"
    )]
    InvalidActorKey {
        /// The rejected text.
        key: String,
    },

    /// The bytes are not a valid wasm module, or it does not export what waPC needs.
    #[error("cannot load actor {actor}: {message}")]
    Load {
        /// The actor being loaded.
        actor: ActorKey,
        /// What is wrong with the module.
        message: String,
    },

    /// The module imports something outside the waPC host contract.
    #[error(
        "actor {actor} imports \"{module}\".\"{name}\"{detail}, which is not part of the waPC \
         host contract; actors can only reach the world through capabilities"
    )]
    UnknownImport {
        /// The actor being loaded.
        actor: ActorKey,
        /// Import module name (e.g. `wasi_snapshot_preview1`).
        module: String,
        /// Imported item name (e.g. `fd_write`).
        name: String,
        /// Extra detail such as a signature mismatch (empty or starts with a space).
        detail: String,
    },

    /// The runtime or the limits are misconfigured.
    #[error("invalid runtime configuration: {0}")]
    Config(String),

    /// The call ran past its deadline ([`Limits::deadline`](crate::Limits::deadline))
    /// and the guest was stopped: while it was computing (`waiting_on` is
    /// `None`), or while one of its host calls had not completed, which was
    /// then abandoned (its future dropped).
    #[error("{}", deadline_message(actor, *limit, waiting_on.as_ref()))]
    Deadline {
        /// The actor.
        actor: ActorKey,
        /// The configured deadline.
        limit: Duration,
        /// The host call the guest was waiting on when the deadline passed.
        waiting_on: Option<PendingHostCall>,
    },

    /// The guest tried to grow its linear memory past its limit.
    #[error(
        "actor {actor} tried to grow its memory past its {limit} byte limit; raise \
         `Limits::max_memory` or reduce the guest's memory use"
    )]
    MemoryLimit {
        /// The actor.
        actor: ActorKey,
        /// The configured limit in bytes.
        limit: usize,
    },

    /// The guest consumed all the fuel it was given for one call.
    #[error(
        "actor {actor} used up its fuel budget of {limit} units; raise `Limits::fuel` \
         or make the guest do less per call"
    )]
    FuelExhausted {
        /// The actor.
        actor: ActorKey,
        /// The configured fuel budget.
        limit: u64,
    },

    /// A request, response or host-call payload exceeded `Limits::max_payload`.
    #[error(
        "actor {actor}: {what} of {size} bytes exceeds the {limit} byte payload limit; \
         raise `Limits::max_payload` or send smaller messages"
    )]
    PayloadTooLarge {
        /// The actor.
        actor: ActorKey,
        /// Which payload (request, guest response, host call payload, ...).
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The configured limit in bytes.
        limit: usize,
    },

    /// The guest trapped (panic, `unreachable`, stack overflow, ...).
    #[error("actor {actor} trapped: {message}")]
    Trap {
        /// The actor.
        actor: ActorKey,
        /// The trap and its wasm backtrace, as reported by the engine.
        message: String,
    },

    /// The guest reported an error (`__guest_error`), broke the waPC protocol,
    /// or passed the host invalid pointers or strings.
    #[error("actor {actor} returned an error: {message}")]
    GuestError {
        /// The actor.
        actor: ActorKey,
        /// The guest's message, or the host's description of the protocol violation.
        message: String,
    },

    /// No instance became free in time: within the call's deadline or
    /// `Limits::queue_timeout`, whichever is shorter ([`WaitBound`] says
    /// which).
    #[error(
        "actor {actor}: no instance was free within {waited:?} ({bound}): all \
         {max_instances} instances stayed busy. Raise `Limits::max_instances`{raise}, or \
         reduce the load; an actor that calls itself holds one instance while its call \
         to itself waits for another",
        raise = bound.setting_hint()
    )]
    QueueTimeout {
        /// The actor.
        actor: ActorKey,
        /// The configured maximum number of instances.
        max_instances: usize,
        /// How long the call waited.
        waited: Duration,
        /// Which limit ended the wait.
        bound: WaitBound,
    },

    /// A guest's host call named a binding, namespace or operation longer
    /// than the host-call ABI allows ([`MAX_BINDING_NAME_LEN`],
    /// [`MAX_NAMESPACE_LEN`], [`MAX_OPERATION_NAME_LEN`]). The guest got a
    /// host error for that host call; the call fails with this error and
    /// the instance is retired, as for any protocol violation.
    #[error(
        "actor {actor} made a host call whose {what} name is {size} bytes long, over the \
         {limit}-byte limit of the host-call ABI (binding {MAX_BINDING_NAME_LEN}, namespace \
         {MAX_NAMESPACE_LEN}, operation {MAX_OPERATION_NAME_LEN} bytes); fix the guest to use \
         the names its bindings and capabilities actually have"
    )]
    NameTooLong {
        /// The actor.
        actor: ActorKey,
        /// Which name: `binding`, `namespace` or `operation`.
        what: &'static str,
        /// Its length in bytes.
        size: usize,
        /// The limit for that name, in bytes.
        limit: usize,
    },

    /// `replace_module` was given a different actor key than the running actor's.
    #[error(
        "cannot replace the module of actor {expected} with one for {got}: hot swap \
         keeps the actor identity; load the other actor separately"
    )]
    KeyMismatch {
        /// The running actor's key.
        expected: ActorKey,
        /// The key given to `replace_module`.
        got: ActorKey,
    },

    /// Creating an instance failed for a reason other than a guest fault
    /// (for example the pooling allocator has no free slot).
    #[error("cannot create an instance of actor {actor}: {message}")]
    Instantiate {
        /// The actor.
        actor: ActorKey,
        /// The engine's explanation.
        message: String,
    },
}

/// The variant of a [`RuntimeError`], without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`RuntimeError::InvalidActorKey`].
    InvalidActorKey,
    /// See [`RuntimeError::Load`].
    Load,
    /// See [`RuntimeError::UnknownImport`].
    UnknownImport,
    /// See [`RuntimeError::Config`].
    Config,
    /// See [`RuntimeError::Deadline`].
    Deadline,
    /// See [`RuntimeError::MemoryLimit`].
    MemoryLimit,
    /// See [`RuntimeError::FuelExhausted`].
    FuelExhausted,
    /// See [`RuntimeError::PayloadTooLarge`].
    PayloadTooLarge,
    /// See [`RuntimeError::Trap`].
    Trap,
    /// See [`RuntimeError::GuestError`].
    GuestError,
    /// See [`RuntimeError::QueueTimeout`].
    QueueTimeout,
    /// See [`RuntimeError::NameTooLong`].
    NameTooLong,
    /// See [`RuntimeError::KeyMismatch`].
    KeyMismatch,
    /// See [`RuntimeError::Instantiate`].
    Instantiate,
}

impl RuntimeError {
    /// The variant, for callers that only need to branch.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidActorKey { .. } => ErrorKind::InvalidActorKey,
            Self::Load { .. } => ErrorKind::Load,
            Self::UnknownImport { .. } => ErrorKind::UnknownImport,
            Self::Config(_) => ErrorKind::Config,
            Self::Deadline { .. } => ErrorKind::Deadline,
            Self::MemoryLimit { .. } => ErrorKind::MemoryLimit,
            Self::FuelExhausted { .. } => ErrorKind::FuelExhausted,
            Self::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            Self::Trap { .. } => ErrorKind::Trap,
            Self::GuestError { .. } => ErrorKind::GuestError,
            Self::QueueTimeout { .. } => ErrorKind::QueueTimeout,
            Self::NameTooLong { .. } => ErrorKind::NameTooLong,
            Self::KeyMismatch { .. } => ErrorKind::KeyMismatch,
            Self::Instantiate { .. } => ErrorKind::Instantiate,
        }
    }

    /// Whether this error stopped the guest in the middle of a call (a trap or
    /// an exceeded limit). The instance that served the call was dropped and
    /// later calls get a fresh one: the actor stays usable.
    pub fn broke_instance(&self) -> bool {
        matches!(
            self.kind(),
            ErrorKind::Deadline
                | ErrorKind::MemoryLimit
                | ErrorKind::FuelExhausted
                | ErrorKind::Trap
        )
    }
}

/// Which limit ended a call's wait for a free instance
/// ([`RuntimeError::QueueTimeout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitBound {
    /// The call's deadline ([`Limits::deadline`](crate::Limits::deadline)),
    /// which counts from the moment the call is made, so waiting for an
    /// instance spends it too.
    Deadline,
    /// [`Limits::queue_timeout`](crate::Limits::queue_timeout), when it is
    /// shorter than the deadline.
    QueueTimeout,
}

impl WaitBound {
    /// The other setting that would have let the call wait longer.
    fn setting_hint(self) -> &'static str {
        match self {
            WaitBound::Deadline => " or `Limits::deadline`",
            WaitBound::QueueTimeout => " or `Limits::queue_timeout`",
        }
    }
}

impl fmt::Display for WaitBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WaitBound::Deadline => "its deadline",
            WaitBound::QueueTimeout => "its queue timeout",
        })
    }
}

/// The host call a guest was waiting on when its deadline passed
/// ([`RuntimeError::Deadline`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingHostCall {
    /// The binding it named.
    pub binding: Name,
    /// Its namespace: a capability id or an actor key.
    pub namespace: Name,
    /// Its operation.
    pub operation: Name,
}

impl fmt::Display for PendingHostCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "operation `{}` of `{}`, binding `{}`",
            self.operation, self.namespace, self.binding
        )
    }
}

/// The text of [`RuntimeError::Deadline`]: what was stopped, and the fix
/// that fits the case.
fn deadline_message(
    actor: &ActorKey,
    limit: Duration,
    waiting_on: Option<&PendingHostCall>,
) -> String {
    let Some(call) = waiting_on else {
        return format!(
            "actor {actor} ran past its {limit:?} deadline and was stopped; raise \
             `Limits::deadline` if the work is legitimate, otherwise fix the guest"
        );
    };
    let fix = if *call.namespace == *actor.as_str() {
        "the actor called itself, which needs a second free instance while the first waits: \
         raise `Limits::max_instances` above the number of calls it makes to itself, or do \
         the work without calling itself"
            .to_owned()
    } else {
        format!(
            "make `{}` answer sooner (check its backend, or give it a timeout shorter than the \
             deadline), or raise `Limits::deadline` if that much waiting is expected",
            call.namespace
        )
    };
    format!(
        "actor {actor} hit its {limit:?} deadline while waiting on a host call ({call}) that \
         had not completed; the host call was abandoned and the guest stopped. To fix: {fix}"
    )
}

/// An engine error's text, for a [`RuntimeError`] or any other host of
/// guests on this engine (the Proxy-Wasm filters): each of its causes, as
/// `{:#}` joins them, cut to an equal share of
/// [`MAX_GUEST_ERROR_BYTES`](crate::MAX_GUEST_ERROR_BYTES) and marked
/// `… (cut)`. A trap's backtrace names the functions of its frames from
/// the module's name section, whose names may be of any length: written
/// whole, twenty frames of a megabyte-long name were twenty megabytes per
/// trap, copied again into spans, logs and the calling actor's host error.
/// Each cause keeps its share, so the trap itself is never cut away by the
/// backtrace before it.
pub fn engine_text(error: &wasmtime::Error) -> String {
    struct Bounded<'a> {
        text: &'a mut String,
        room: usize,
    }
    impl fmt::Write for Bounded<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            if s.len() <= self.room {
                self.text.push_str(s);
                self.room -= s.len();
                Ok(())
            } else {
                // Failing stops the writer: the rest is never formatted.
                self.text.push_str(&s[..s.floor_char_boundary(self.room)]);
                self.room = 0;
                Err(fmt::Error)
            }
        }
    }
    let share = crate::MAX_GUEST_ERROR_BYTES / error.chain().count().max(1);
    let mut text = String::new();
    for (i, cause) in error.chain().enumerate() {
        if i > 0 {
            text.push_str(": ");
        }
        let mut bounded = Bounded {
            text: &mut text,
            room: share,
        };
        if fmt::write(&mut bounded, format_args!("{cause}")).is_err() {
            text.push_str("… (cut)");
        }
    }
    text
}
