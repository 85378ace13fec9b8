//! A small command-line parser: `--flag value` and `--switch` options after a subcommand,
//! with errors that name the option.
use crate::error::{Error, Result};

pub struct Args {
    items: Vec<String>,
}

impl Args {
    pub fn new(items: Vec<String>) -> Args {
        Args { items }
    }

    /// Removes `--name` and returns whether it was there.
    pub fn switch(&mut self, name: &str) -> bool {
        match self.items.iter().position(|a| a == name) {
            Some(i) => {
                self.items.remove(i);
                true
            }
            None => false,
        }
    }

    /// Removes every `--name VALUE` and returns the values in order.
    pub fn values(&mut self, name: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        while let Some(i) = self.items.iter().position(|a| a == name) {
            if i + 1 >= self.items.len() {
                return Err(Error::invalid(format!("{name} needs a value")));
            }
            out.push(self.items.remove(i + 1));
            self.items.remove(i);
        }
        Ok(out)
    }

    /// Removes `--name VALUE` (the last one wins) and returns the value.
    pub fn value(&mut self, name: &str) -> Result<Option<String>> {
        Ok(self.values(name)?.pop())
    }

    /// `--name VALUE` parsed as `T`.
    pub fn parsed<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>> {
        match self.value(name)? {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::invalid(format!("{name}: cannot parse {v:?}"))),
        }
    }

    /// Fails if anything was not consumed.
    pub fn finish(self) -> Result<()> {
        if self.items.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(format!("unexpected arguments: {}", self.items.join(" "))))
        }
    }
}
