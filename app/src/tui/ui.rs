//! Drawing the chat UI from its [`App`] state (ratatui).

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, List, ListItem, ListState, Paragraph, Tabs, Wrap},
};

use super::state::{App, Screen};
use crate::{
    api,
    output::{duration, short, text_of},
};

const ACCENT: Color = Color::Cyan;

/// Draws the whole UI.
pub(crate) fn draw(frame: &mut Frame<'_>, app: &App) {
    let [tabs, body, status] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    draw_tabs(frame, tabs, app);
    match app.screen {
        Screen::Chats => draw_chats(frame, body, app),
        Screen::Requests => draw_requests(frame, body, app),
        Screen::Link => draw_link(frame, body, app),
    }
    draw_status(frame, status, app);
}

fn draw_tabs(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let requests =
        if app.requests.is_empty() { "Requests".to_owned() } else { format!("Requests ({})", app.requests.len()) };
    let titles = vec!["Chats".to_owned(), requests, "Link".to_owned()];
    let index = Screen::ALL.iter().position(|s| *s == app.screen).unwrap_or(0);
    let tabs = Tabs::new(titles)
        .select(index)
        .highlight_style(Style::default().fg(ACCENT).add_modifier(Modifier::BOLD | Modifier::REVERSED))
        .divider("│");
    let [left, right] = Layout::horizontal([Constraint::Min(10), Constraint::Length(34)]).areas(area);
    frame.render_widget(tabs, left);
    let help = Paragraph::new("Tab: switch · Ctrl-C: quit").style(Style::default().fg(Color::DarkGray));
    frame.render_widget(help, right);
}

fn draw_chats(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let [list_area, chat_area] = Layout::horizontal([Constraint::Length(28), Constraint::Min(20)]).areas(area);
    // Requests waiting for an answer come first, answered right here.
    let requests = app.requests.iter().map(|r| {
        let style = Style::default().fg(Color::Yellow);
        ListItem::new(Line::from(Span::styled(format!("✉ {}", request_name(r)), style)))
    });
    let items: Vec<ListItem<'_>> = requests
        .chain(app.conversations.iter().map(|c| {
            let mut spans = vec![Span::raw(c.title.clone())];
            if c.unread > 0 {
                spans.push(Span::styled(format!(" ●{}", c.unread), Style::default().fg(ACCENT)));
            } else if app.unread.contains(&c.id) {
                spans.push(Span::styled(" ●", Style::default().fg(ACCENT)));
            }
            if c.undelivered > 0 {
                spans.push(Span::styled(format!(" ↑{}", c.undelivered), Style::default().fg(Color::Yellow)));
            }
            ListItem::new(Line::from(spans))
        }))
        .collect();
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title(" Conversations "))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("› ");
    let selected = match app.inline_request {
        Some(i) => Some(i),
        None => (!app.conversations.is_empty()).then_some(app.requests.len() + app.selected),
    };
    let mut state = ListState::default().with_selected(selected);
    frame.render_stateful_widget(list, list_area, &mut state);
    if let Some(r) = app.inline_request.and_then(|i| app.requests.get(i)) {
        let text = format!(
            "{} asks to be your contact (account {}).\n\na  accept\nd  discard\nb  block\n↓  back to the conversations",
            request_name(r),
            short(&r.account)
        );
        let block = Block::default().borders(Borders::ALL).title(" Contact request ");
        frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }).block(block), chat_area);
        return;
    }
    if app.conversations.is_empty() && app.requests.is_empty() {
        let hint =
            Paragraph::new("No conversations yet.\n\nTab → Requests to accept one,\nor share your link (Tab → Link).")
                .wrap(Wrap { trim: true })
                .style(Style::default().fg(Color::DarkGray));
        frame.render_widget(hint, inner(list_area));
    }

    let [messages_area, input_area] = Layout::vertical([Constraint::Min(3), Constraint::Length(3)]).areas(chat_area);
    let current = app.current();
    let title = match current {
        Some(c) => format!(" {} · {} ", c.title, short(&c.id)),
        None => " Messages ".to_owned(),
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner_area = block.inner(messages_area);
    frame.render_widget(block, messages_area);
    let them = current.filter(|c| c.kind() == api::ConversationKind::Contact).map(|c| c.title.as_str());
    let lines = message_lines(&app.messages, them, usize::from(inner_area.width));
    let height = usize::from(inner_area.height);
    let visible: Vec<Line<'_>> = lines.into_iter().rev().take(height).rev().collect();
    frame.render_widget(Paragraph::new(visible), inner_area);

    let input = Paragraph::new(format!("{}▏", app.input))
        .block(Block::default().borders(Borders::ALL).title(" Message (Enter to send) "));
    frame.render_widget(input, input_area);
}

/// How a request is shown: the name it gave, else its key's prefix.
fn request_name(r: &api::Contact) -> String {
    if r.name.is_empty() { format!("contact {}", short(&r.account)) } else { r.name.clone() }
}

fn inner(area: Rect) -> Rect {
    Block::default().borders(Borders::ALL).inner(area)
}

/// The messages as lines, wrapped by hand to `width` so the view can show
/// the last lines that fit.
fn message_lines(messages: &[api::Message], them: Option<&str>, width: usize) -> Vec<Line<'static>> {
    let width = width.max(8);
    let mut out = Vec::new();
    for m in messages {
        let (who, colour) = if m.mine {
            ("you".to_owned(), Color::Green)
        } else {
            let who = match them {
                Some(name) => name.to_owned(),
                None if m.author.is_empty() => "?".to_owned(),
                None => short(&m.author).to_owned(),
            };
            (who, ACCENT)
        };
        let prefix = format!("{who}: ");
        let mut text: String = text_of(&m.body).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        if m.mine && m.owed_to > 0 {
            // Ticks: delivered to everyone it was owed to, or still waiting
            // (group messages carry none: their delivery is not known).
            text.push_str(if m.waiting_for == 0 { " ✓" } else { " …" });
        }
        let indent = prefix.chars().count().min(width / 2);
        let first_room = width.saturating_sub(prefix.chars().count()).max(1);
        for (i, chunk) in wrap(&text, first_room, (width - indent).max(1)).into_iter().enumerate() {
            out.push(if i == 0 {
                Line::from(vec![
                    Span::styled(prefix.clone(), Style::default().fg(colour).add_modifier(Modifier::BOLD)),
                    Span::raw(chunk),
                ])
            } else {
                Line::from(vec![Span::raw(" ".repeat(indent)), Span::raw(chunk)])
            });
        }
    }
    out
}

/// Splits `text` into lines of at most `first` characters (the first line)
/// and `rest` (the others), between words where it can.
pub(super) fn wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let (mut line, mut len, mut room) = (String::new(), 0usize, first);
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let space = usize::from(len > 0);
            if len + space + word.len() <= room {
                if space == 1 {
                    line.push(' ');
                }
                line.extend(word.iter());
                len += space + word.len();
                break;
            }
            if len > 0 {
                lines.push(std::mem::take(&mut line));
                (len, room) = (0, rest);
                continue;
            }
            // A word longer than a whole line is cut.
            let head: String = word.drain(..room).collect();
            lines.push(head);
            room = rest;
        }
    }
    lines.push(line);
    lines
}

fn draw_requests(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let block = Block::default().borders(Borders::ALL).title(" Contact requests — a: accept · d: discard · b: block ");
    if app.requests.is_empty() {
        let text = "No contact requests.\n\nShare your link (Tab → Link) so people can send you one.";
        frame.render_widget(Paragraph::new(text).block(block).wrap(Wrap { trim: true }), area);
        return;
    }
    let items: Vec<ListItem<'_>> = app
        .requests
        .iter()
        .map(|r| {
            let name = if r.name.is_empty() { "(no name)" } else { r.name.as_str() };
            ListItem::new(Line::from(vec![
                Span::styled(format!("{name:<20}"), Style::default().add_modifier(Modifier::BOLD)),
                Span::styled(format!(" account {}", short(&r.account)), Style::default().fg(Color::DarkGray)),
            ]))
        })
        .collect();
    let list = List::new(items)
        .block(block)
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("› ");
    let mut state = ListState::default().with_selected(Some(app.request_selected));
    frame.render_stateful_widget(list, area, &mut state);
}

fn draw_link(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let block = Block::default().borders(Borders::ALL).title(" Your contact link — e: enable/disable · R: reset ");
    let mut lines: Vec<Line<'_>> = Vec::new();
    match &app.link {
        None => lines.push(Line::raw("loading…")),
        Some(link) => {
            let state = if link.enabled {
                Span::styled("enabled: people with this link can send you a request", Style::default().fg(Color::Green))
            } else {
                Span::styled("disabled: nobody can reach you through it", Style::default().fg(Color::Red))
            };
            lines.push(Line::from(state));
            lines.push(Line::raw(link.uri.clone()));
            lines.push(Line::raw(""));
            if let Some(qr) = &app.qr {
                lines.extend(qr.lines().map(|l| Line::raw(l.to_owned())));
            }
        }
    }
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
}

fn draw_status(frame: &mut Frame<'_>, area: Rect, app: &App) {
    let mut spans = Vec::new();
    if !app.connected {
        spans.push(Span::styled(" daemon disconnected ", Style::default().fg(Color::White).bg(Color::Red)));
    } else if let Some(s) = &app.status {
        spans.push(Span::styled(format!(" policy {} ", s.policy), Style::default().fg(Color::Black).bg(ACCENT)));
        let peers = s.connected_peers.len();
        let net = if peers == 0 {
            Span::styled(" offline: no peers ", Style::default().fg(Color::Yellow))
        } else {
            Span::styled(
                format!(" online: {peers} peer{} ", if peers == 1 { "" } else { "s" }),
                Style::default().fg(Color::Green),
            )
        };
        spans.push(net);
        spans.push(Span::styled(
            format!("· rendezvous rotates in {} ", duration(s.next_rotation_in)),
            Style::default().fg(Color::DarkGray),
        ));
    }
    let sending = app.sending();
    if sending > 0 {
        spans.push(Span::styled(format!("· sending {sending}… "), Style::default().fg(Color::Yellow)));
    }
    if let Some(n) = &app.notice {
        spans.push(Span::raw(format!("· {n}")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
