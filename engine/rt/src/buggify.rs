//! `buggify!()`: points in the code that widen rare paths in simulation (FoundationDB's BUGGIFY).
//!
//! With the `buggify` feature off (every production build) the macro is the constant `false` and
//! the branch it guards compiles away. With it on, the simulator installs a hook on its thread that
//! decides, from the seed, which points are active in a run and how often they fire.

use std::cell::RefCell;
use std::rc::Rc;

/// Decides whether the point at `site` ("file:line") fires now.
pub type BuggifyHook = Rc<dyn Fn(&'static str) -> bool>;

thread_local! {
    static HOOK: RefCell<Option<BuggifyHook>> = const { RefCell::new(None) };
}

/// Installs (or with `None` removes) this thread's hook; returns the previous one.
pub fn install_buggify_hook(hook: Option<BuggifyHook>) -> Option<BuggifyHook> {
    HOOK.with(|slot| std::mem::replace(&mut *slot.borrow_mut(), hook))
}

#[doc(hidden)]
pub fn fire(site: &'static str) -> bool {
    let hook = HOOK.with(|slot| slot.borrow().clone());
    hook.is_some_and(|hook| hook(site))
}

/// True, now and then, in a simulation run that activated this point; always false in production.
#[cfg(feature = "buggify")]
#[macro_export]
macro_rules! buggify {
    () => {
        $crate::__buggify_fire(concat!(file!(), ":", line!()))
    };
}

/// True, now and then, in a simulation run that activated this point; always false in production.
#[cfg(not(feature = "buggify"))]
#[macro_export]
macro_rules! buggify {
    () => {
        false
    };
}
