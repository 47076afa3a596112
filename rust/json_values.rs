//! How many values a Python value holds once written out, counted over what it
//! holds in memory (PyO3: this walks Python objects).
//!
//! A few shared containers nested deep expand exponentially when serialised: a
//! list holding one list twice, 40 levels deep, is 41 objects and 2^41 values,
//! and orjson (or a repr, or any walk that copies) would take every byte of
//! memory the bot has. The ledger refuses such a value at the call, before
//! anything writes it out.

use std::collections::{HashMap, HashSet};

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::iter::{BoundDictIterator, BoundListIterator, BoundTupleIterator};
use pyo3::types::{
    PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyMapping, PySet, PyString, PyTuple, PyType,
};

/// Each container and scalar once per place it appears, as orjson writes it
/// (dicts, lists, tuples, dataclasses, enums) or a repr prints it (other
/// mappings, sets), counting no further than just past `limit`; a container
/// holding itself is past it. A shared container is walked once (a memo by
/// identity) and the walk keeps its stack on the heap, so it costs what the
/// value holds in memory, at any depth.
#[pyfunction]
pub fn json_values(value: &Bound<'_, PyAny>, limit: u64) -> u64 {
    let mut walk = Walk::default();
    let Some(items) = walk.items(value) else {
        return 1;
    };
    let root = value.as_ptr() as usize;
    walk.on_stack.insert(root);
    // (the container if it may be shared, its values, its count so far)
    let mut stack = vec![(Some(root), items, 1u64)];
    let mut total: u64 = 1;
    while let Some((_key, items, n)) = stack.last_mut() {
        let Some(child) = items.next() else {
            let Some((key, _items, n)) = stack.pop() else {
                break;
            };
            if let Some(key) = key {
                walk.on_stack.remove(&key);
                walk.memo.insert(key, n);
            }
            match stack.last_mut() {
                Some(parent) => parent.2 = parent.2.saturating_add(n),
                None => return n,
            }
            continue;
        };
        let key = child.as_ptr() as usize;
        if let Some(&counted) = walk.memo.get(&key) {
            *n = n.saturating_add(counted);
            total = total.saturating_add(counted);
        } else if walk.on_stack.contains(&key) {
            return limit.saturating_add(1); // holds itself: writing it out never ends
        } else if let Some(grandchildren) = walk.items(&child) {
            // Held by its container and by `child` alone: met nowhere else, so neither
            // remembered nor a way into a cycle (a cycle's way in has two holders).
            // SAFETY: reads the count of an object `child` keeps alive.
            let shared = unsafe { pyo3::ffi::Py_REFCNT(child.as_ptr()) } > 2;
            if shared {
                walk.on_stack.insert(key);
            }
            stack.push((shared.then_some(key), grandchildren, 1));
            total = total.saturating_add(1);
        } else {
            *n = n.saturating_add(1);
            total = total.saturating_add(1);
        }
        if total > limit {
            return total;
        }
    }
    total
}

#[derive(Default)]
struct Walk<'py> {
    memo: HashMap<usize, u64>,
    on_stack: HashSet<usize>,
    /// What other containers hold, by type (asked once a type per walk: a failed
    /// attribute look-up costs about a microsecond).
    holders: HashMap<usize, Holder>,
    /// Lists made of other containers' values live to the end of the walk: a
    /// value only such a list held must not free its address for a new object's
    /// memo key.
    made: Vec<Bound<'py, PyList>>,
}

#[derive(Clone, Copy)]
enum Holder {
    Not,
    Set,
    Dataclass,
    Enum,
    Mapping,
}

enum Items<'py> {
    List(BoundListIterator<'py>),
    Tuple(BoundTupleIterator<'py>),
    Dict(BoundDictIterator<'py>),
}

impl<'py> Iterator for Items<'py> {
    type Item = Bound<'py, PyAny>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Items::List(it) => it.next(),
            Items::Tuple(it) => it.next(),
            Items::Dict(it) => it.next().map(|(_key, value)| value),
        }
    }
}

impl<'py> Walk<'py> {
    /// The values a container holds; `None` for a scalar, or for a container
    /// whose reading raises (orjson or the repr will say so, cheaply).
    fn items(&mut self, value: &Bound<'py, PyAny>) -> Option<Items<'py>> {
        if value.is_instance_of::<PyString>()
            || value.is_instance_of::<PyInt>()
            || value.is_instance_of::<PyFloat>()
            || value.is_none()
        {
            return None;
        }
        if let Ok(list) = value.cast::<PyList>() {
            return Some(Items::List(list.clone().into_iter()));
        }
        if let Ok(dict) = value.cast::<PyDict>() {
            return Some(Items::Dict(dict.clone().into_iter()));
        }
        if let Ok(tuple) = value.cast::<PyTuple>() {
            return Some(Items::Tuple(tuple.clone().into_iter()));
        }
        let py = value.py();
        let kind = *self
            .holders
            .entry(value.get_type().as_ptr() as usize)
            .or_insert_with(|| holder(value));
        let values = match kind {
            Holder::Not => return None,
            Holder::Set => Ok(value.clone()),
            Holder::Dataclass => value
                .get_type()
                .getattr(intern!(py, "__dataclass_fields__"))
                .and_then(|fields| {
                    let values = fields
                        .try_iter()?
                        .map(|name| value.getattr(name?.cast_into::<PyString>()?))
                        .collect::<PyResult<Vec<_>>>()?;
                    Ok(PyList::new(py, values)?.into_any())
                }),
            Holder::Enum => value
                .getattr(intern!(py, "value"))
                .and_then(|v| Ok(PyList::new(py, [v])?.into_any())),
            Holder::Mapping => value.call_method0(intern!(py, "values")),
        };
        let values = values.and_then(|v| v.try_iter()?.collect::<PyResult<Vec<_>>>());
        let list = values.and_then(|v| PyList::new(py, v)).ok()?;
        self.made.push(list.clone());
        Some(Items::List(list.into_iter()))
    }
}

fn holder(value: &Bound<'_, PyAny>) -> Holder {
    let py = value.py();
    let dataclass = value
        .get_type()
        .getattr_opt(intern!(py, "__dataclass_fields__"));
    if value.is_instance_of::<PySet>() || value.is_instance_of::<PyFrozenSet>() {
        Holder::Set
    } else if matches!(dataclass, Ok(Some(_))) {
        Holder::Dataclass
    } else if enum_type(py).is_ok_and(|e| value.is_instance(e).unwrap_or(false)) {
        Holder::Enum
    } else if value.cast::<PyMapping>().is_ok() {
        Holder::Mapping
    } else {
        Holder::Not
    }
}

fn enum_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static ENUM: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    ENUM.import(py, "enum", "Enum")
}
