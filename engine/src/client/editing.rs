//! What the user does to the text: inserts, deletes, replacements, each recorded as an exact
//! operation on the text (`local`); refused while the server says the client may only read.

use super::*;

impl ClientEngine {
    /// The token every `connect` carries (a server with access control requires one).
    pub fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    /// The server said our token grants only reading: [`insert`](Self::insert) and the
    /// other edits return [`EngineError::ReadOnly`].
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn writable(&self) -> Result<(), EngineError> {
        if self.read_only {
            Err(EngineError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Replace the user's text (line endings are normalised to `\n`).
    pub fn set_text(&mut self, text: &str) -> Result<(), EngineError> {
        self.writable()?;
        let text = normalize_newlines(text);
        if text.len() > self.config.limits.max_document_bytes {
            return Err(EngineError::DocumentTooLarge {
                len: text.len(),
                max: self.config.limits.max_document_bytes,
            });
        }
        // A whole new text: the change is only known as a diff.
        self.local = Operation::from_diff(&self.shadow.text.flat(), &text);
        self.text = Rope::from(text.into_owned());
        self.assert_invariants();
        Ok(())
    }

    /// Record a local edit, already checked, as an operation on `text`.
    fn edit(&mut self, op: Operation) {
        // Neither can fail: `op` was built for `text`, and `local` ends where `text` is.
        match self.local.compose(&op) {
            Ok(local) => {
                self.local = local;
                if let Err(e) = op.apply_in_place(&mut self.text) {
                    debug_assert!(false, "local edit did not fit: {e}");
                }
            }
            Err(e) => debug_assert!(false, "local edit did not fit: {e}"),
        }
    }

    /// Insert `s` before char index `at`.
    pub fn insert(&mut self, at: usize, s: &str) -> Result<(), EngineError> {
        self.writable()?;
        let byte = char_to_byte(&self.text, at)?;
        let s = normalize_newlines(s);
        if self.text.len() + s.len() > self.config.limits.max_document_bytes {
            return Err(EngineError::DocumentTooLarge {
                len: self.text.len() + s.len(),
                max: self.config.limits.max_document_bytes,
            });
        }
        self.edit(Operation::insertion(self.text.len(), byte, &s));
        self.assert_invariants();
        Ok(())
    }

    /// Replace `delete` bytes at byte offset `at` by `insert` — for editors that track byte
    /// offsets (no char counting). Offsets must fall on char boundaries.
    pub fn edit_bytes(
        &mut self,
        at: usize,
        delete: usize,
        insert: &str,
    ) -> Result<(), EngineError> {
        self.writable()?;
        let end = at.checked_add(delete).filter(|&e| e <= self.text.len());
        let Some(end) =
            end.filter(|&e| self.text.is_char_boundary(at) && self.text.is_char_boundary(e))
        else {
            return Err(EngineError::BadPosition {
                at,
                len: self.text.len(),
            });
        };
        let insert = normalize_newlines(insert);
        if self.text.len() - delete + insert.len() > self.config.limits.max_document_bytes {
            return Err(EngineError::DocumentTooLarge {
                len: self.text.len() - delete + insert.len(),
                max: self.config.limits.max_document_bytes,
            });
        }
        let mut op = Operation::new();
        op.retain(at)
            .insert(&insert)
            .delete(delete)
            .retain(self.text.len() - end);
        self.edit(op);
        self.assert_invariants();
        Ok(())
    }

    /// Delete the chars `start..end`.
    pub fn delete(&mut self, start: usize, end: usize) -> Result<(), EngineError> {
        self.writable()?;
        if start > end {
            return Err(EngineError::BadRange { start, end });
        }
        let a = char_to_byte(&self.text, start)?;
        let b = char_to_byte(&self.text, end)?;
        self.edit(Operation::deletion(self.text.len(), a..b));
        self.assert_invariants();
        Ok(())
    }
}
