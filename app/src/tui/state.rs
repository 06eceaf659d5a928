//! The chat UI's state and what keys do to it. Pure: no terminal, no
//! daemon; the runner carries out the returned [`Action`]s.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::api::{self, MAX_BODY};

/// The screens, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Screen {
    /// Conversations, messages and the input line.
    Chats,
    /// Contact requests waiting for an answer.
    Requests,
    /// The contact link and its QR code.
    Link,
}

impl Screen {
    pub(crate) const ALL: [Screen; 3] = [Screen::Chats, Screen::Requests, Screen::Link];

    fn index(self) -> usize {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    fn step(self, by: isize) -> Self {
        let n = Self::ALL.len() as isize;
        let i = (self.index() as isize + by).rem_euclid(n);
        Self::ALL[usize::try_from(i).unwrap_or(0)]
    }
}

/// What the runner should do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Nothing beyond redrawing.
    None,
    /// Leave the UI.
    Quit,
    /// Load the selected conversation's messages.
    LoadHistory,
    /// Send a message.
    Send {
        /// The selected conversation's id, as the daemon listed it.
        conversation: String,
        /// The input line, trimmed, as UTF-8 (never empty, at most `MAX_BODY` bytes).
        body: Vec<u8>,
    },
    /// Answer a contact request.
    Decide {
        /// The requester's account key.
        contact: String,
        /// What the user chose: accept, discard or block.
        decision: api::Decision,
    },
    /// Enable or disable the link.
    SetLinkEnabled(bool),
    /// Draw a new link.
    ResetLink,
}

/// Everything the UI shows.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) screen: Screen,
    pub(crate) conversations: Vec<api::Conversation>,
    pub(crate) selected: usize,
    /// Messages of the selected conversation.
    pub(crate) messages: Vec<api::Message>,
    pub(crate) input: String,
    /// Incoming contact requests.
    pub(crate) requests: Vec<api::Contact>,
    pub(crate) request_selected: usize,
    pub(crate) link: Option<api::Link>,
    /// The link's QR code, drawn.
    pub(crate) qr: Option<String>,
    pub(crate) status: Option<api::Status>,
    /// Whether the daemon's event stream is up.
    pub(crate) connected: bool,
    /// The last notice or error, shown in the status bar.
    pub(crate) notice: Option<String>,
    /// Conversations with messages not looked at yet.
    pub(crate) unread: std::collections::BTreeSet<String>,
    /// A reset was asked for once; the second `R` confirms.
    pub(crate) confirm_reset: bool,
    /// In the chats screen, the request row selected (requests are listed
    /// above the conversations, and answered there too), if one is.
    pub(crate) inline_request: Option<usize>,
}

impl Default for App {
    fn default() -> Self {
        Self {
            screen: Screen::Chats,
            conversations: Vec::new(),
            selected: 0,
            messages: Vec::new(),
            input: String::new(),
            requests: Vec::new(),
            request_selected: 0,
            link: None,
            qr: None,
            status: None,
            connected: true,
            notice: None,
            unread: Default::default(),
            confirm_reset: false,
            inline_request: None,
        }
    }
}

impl App {
    /// The selected conversation; `None` while there is none.
    pub(crate) fn current(&self) -> Option<&api::Conversation> {
        self.conversations.get(self.selected)
    }

    /// Replaces the conversation list, keeping the selection on the same
    /// conversation where it still exists. Returns whether the selected
    /// conversation changed.
    pub(crate) fn set_conversations(&mut self, list: Vec<api::Conversation>) -> bool {
        let before = self.current().map(|c| c.id.clone());
        self.conversations = list;
        self.selected = before
            .as_ref()
            .and_then(|id| self.conversations.iter().position(|c| &c.id == id))
            .unwrap_or(0)
            .min(self.conversations.len().saturating_sub(1));
        let changed = self.current().map(|c| c.id.clone()) != before;
        if let Some(c) = self.current() {
            let id = c.id.clone();
            self.unread.remove(&id);
        }
        changed
    }

    /// Replaces the request list with the contacts waiting for an answer.
    pub(crate) fn set_contacts(&mut self, contacts: Vec<api::Contact>) {
        self.requests = contacts.into_iter().filter(|c| c.state() == api::ContactState::IncomingReceived).collect();
        self.request_selected = self.request_selected.min(self.requests.len().saturating_sub(1));
        let last = self.requests.len().checked_sub(1);
        self.inline_request = self.inline_request.and_then(|i| last.map(|l| i.min(l)));
    }

    /// Takes a conversation as it stands once marked read.
    pub(crate) fn read(&mut self, conversation: api::Conversation) {
        self.unread.remove(&conversation.id);
        if let Some(c) = self.conversations.iter_mut().find(|c| c.id == conversation.id) {
            *c = conversation;
        }
    }

    /// Notes a new message in `conversation`.
    pub(crate) fn mark_unread(&mut self, conversation: &str) {
        if self.current().is_none_or(|c| c.id != conversation) {
            self.unread.insert(conversation.to_owned());
        }
    }

    /// Messages of ours not acknowledged yet, over every conversation.
    pub(crate) fn sending(&self) -> u64 {
        self.conversations.iter().map(|c| c.undelivered).sum()
    }

    /// Handles a key press.
    pub(crate) fn on_key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c' | 'q') if ctrl => return Action::Quit,
            KeyCode::Tab => return self.go(self.screen.step(1)),
            KeyCode::BackTab => return self.go(self.screen.step(-1)),
            KeyCode::F(n @ 1..=3) => return self.go(Screen::ALL[usize::from(n - 1)]),
            _ => {}
        }
        match self.screen {
            Screen::Chats => self.chats_key(key),
            Screen::Requests => self.requests_key(key),
            Screen::Link => self.link_key(key),
        }
    }

    fn go(&mut self, screen: Screen) -> Action {
        self.screen = screen;
        self.confirm_reset = false;
        Action::None
    }

    fn select(&mut self, index: usize) -> Action {
        if index == self.selected || index >= self.conversations.len() {
            return Action::None;
        }
        self.selected = index;
        if let Some(id) = self.current().map(|c| c.id.clone()) {
            self.unread.remove(&id);
        }
        self.messages.clear();
        Action::LoadHistory
    }

    fn chats_key(&mut self, key: KeyEvent) -> Action {
        if let Some(i) = self.inline_request {
            return self.inline_request_key(i, key);
        }
        match key.code {
            // Above the first conversation: the requests waiting, last first.
            KeyCode::Up if self.selected == 0 && !self.requests.is_empty() => {
                self.inline_request = Some(self.requests.len() - 1);
                Action::None
            }
            KeyCode::Up => self.select(self.selected.saturating_sub(1)),
            KeyCode::Down => self.select(self.selected + 1),
            KeyCode::Esc if self.input.is_empty() => Action::Quit,
            KeyCode::Esc => {
                self.input.clear();
                Action::None
            }
            KeyCode::Backspace => {
                self.input.pop();
                Action::None
            }
            KeyCode::Enter => {
                let text = self.input.trim();
                if text.is_empty() {
                    return Action::None;
                }
                let Some(conversation) = self.current().map(|c| c.id.clone()) else {
                    self.notice = Some("no conversation yet: accept a request or add a contact".into());
                    return Action::None;
                };
                let body = text.as_bytes().to_vec();
                self.input.clear();
                Action::Send { conversation, body }
            }
            KeyCode::Char(c) => {
                if self.input.len() + c.len_utf8() <= MAX_BODY {
                    self.input.push(c);
                } else {
                    self.notice = Some(format!("a message holds at most {MAX_BODY} bytes"));
                }
                Action::None
            }
            _ => Action::None,
        }
    }

    /// Keys while request `i` is selected in the chats screen: answer it
    /// (`a`/Enter, `d`, `b`) or move (back down into the conversations).
    fn inline_request_key(&mut self, i: usize, key: KeyEvent) -> Action {
        let decision = match key.code {
            KeyCode::Up => {
                self.inline_request = Some(i.saturating_sub(1));
                return Action::None;
            }
            KeyCode::Down if i + 1 < self.requests.len() => {
                self.inline_request = Some(i + 1);
                return Action::None;
            }
            KeyCode::Down => {
                self.inline_request = None;
                return Action::None;
            }
            KeyCode::Esc => return Action::Quit,
            KeyCode::Char('a') | KeyCode::Enter => api::Decision::Accept,
            KeyCode::Char('d') => api::Decision::Discard,
            KeyCode::Char('b') => api::Decision::Block,
            KeyCode::Char(_) => {
                self.notice = Some("a request: a accept · d discard · b block · ↓ back to the conversations".into());
                return Action::None;
            }
            _ => return Action::None,
        };
        match self.requests.get(i) {
            Some(r) => Action::Decide { contact: r.account.clone(), decision },
            None => Action::None,
        }
    }

    fn requests_key(&mut self, key: KeyEvent) -> Action {
        let decision = match key.code {
            KeyCode::Up => {
                self.request_selected = self.request_selected.saturating_sub(1);
                return Action::None;
            }
            KeyCode::Down => {
                self.request_selected = (self.request_selected + 1).min(self.requests.len().saturating_sub(1));
                return Action::None;
            }
            KeyCode::Esc | KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('a') | KeyCode::Enter => api::Decision::Accept,
            KeyCode::Char('d') => api::Decision::Discard,
            KeyCode::Char('b') => api::Decision::Block,
            _ => return Action::None,
        };
        match self.requests.get(self.request_selected) {
            Some(r) => Action::Decide { contact: r.account.clone(), decision },
            None => Action::None,
        }
    }

    fn link_key(&mut self, key: KeyEvent) -> Action {
        match key.code {
            KeyCode::Esc | KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('e') => {
                self.confirm_reset = false;
                Action::SetLinkEnabled(!self.link.as_ref().is_some_and(|l| l.enabled))
            }
            KeyCode::Char('R') if self.confirm_reset => {
                self.confirm_reset = false;
                Action::ResetLink
            }
            KeyCode::Char('R') => {
                self.confirm_reset = true;
                self.notice = Some("press R again to reset: every earlier link stops working".into());
                Action::None
            }
            _ => {
                self.confirm_reset = false;
                Action::None
            }
        }
    }
}
