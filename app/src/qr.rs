//! QR codes drawn in the terminal with Unicode half blocks.

use anyhow::{Result, anyhow};
use qrcode::{EcLevel, QrCode, render::unicode::Dense1x2};

/// Draws `text` as a QR code: two modules per character cell, light modules
/// as blocks, so it reads on the usual dark terminal background.
pub(crate) fn render(text: &str) -> Result<String> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| anyhow!("cannot draw this link as a QR code: {e}"))?;
    Ok(code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).quiet_zone(true).build())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_link_draws_as_a_square_of_half_blocks() {
        let drawn = render("VEIL:CONTACT:ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789").unwrap();
        let lines: Vec<&str> = drawn.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "every row is as wide");
        // Two rows of modules per line: about half as many lines as columns.
        assert!(lines.len() * 2 >= width && lines.len() * 2 <= width + 2);
        assert!(drawn.chars().all(|c| matches!(c, ' ' | '█' | '▀' | '▄' | '\n')));
    }
}
