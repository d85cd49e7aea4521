//! The model's own chat template: the Jinja template a GGUF carries in
//! `tokenizer.chat_template` (or a HF folder in `tokenizer_config.json`), rendered with
//! minijinja. Models without one get ChatML, which SmolLM2 and Qwen2.5 use.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file;
use minijinja::{context, Environment, Error, ErrorKind};
use serde::Serialize;

/// Who speaks a chat turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

/// ChatML, for models that ship no template.
pub const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// A chat template and the special tokens it may refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
    /// Where the template came from, for reports.
    pub origin: String,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

/// Marks the user's text while splitting a rendered prompt around it; no tokenizer or template
/// produces it.
const USER_SLOT: &str = "\u{1}\u{2}coaug-user-text\u{2}\u{1}";

impl ChatTemplate {
    /// ChatML.
    pub fn chatml() -> Self {
        Self { source: CHATML.into(), bos_token: String::new(), eos_token: "<|im_end|>".into(), origin: "ChatML (built in)".into() }
    }

    /// A template given as text; it is checked by rendering a system + user conversation.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
        origin: impl Into<String>,
    ) -> Result<Self> {
        let template = Self { source: source.into(), bos_token: bos_token.into(), eos_token: eos_token.into(), origin: origin.into() };
        template
            .render(&[(ChatRole::System, "s"), (ChatRole::User, "u")], true)
            .with_context(|| format!("the chat template of {}", template.origin))?;
        Ok(template)
    }

    /// The template in GGUF metadata (`tokenizer.chat_template`), if any.
    pub fn from_gguf_metadata(md: &HashMap<String, gguf_file::Value>, tokens: &[String], origin: &str) -> Result<Option<Self>> {
        let Some(source) = md.get("tokenizer.chat_template") else {
            return Ok(None);
        };
        let source = source.to_string().map_err(|e| anyhow!("tokenizer.chat_template: {e}"))?;
        let token = |key: &str| -> String {
            md.get(key).and_then(|v| v.to_u32().ok()).and_then(|id| tokens.get(id as usize).cloned()).unwrap_or_default()
        };
        Self::new(source.clone(), token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id"), origin).map(Some)
    }

    /// The template of a HF folder's `tokenizer_config.json` (`chat_template`: a string, or a list
    /// of named templates of which "default" is taken), if any.
    pub fn from_tokenizer_config(path: &Path) -> Result<Option<Self>> {
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        let source = match json.get("chat_template") {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string))
                .with_context(|| format!("{}: chat_template lists no \"default\" template", path.display()))?,
            Some(other) => bail!("{}: chat_template is {other}, expected a string", path.display()),
        };
        // Special tokens are strings or {"content": ...} objects.
        let token = |key: &str| -> String {
            match json.get(key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v) => v.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_string(),
                None => String::new(),
            }
        };
        Self::new(source, token("bos_token"), token("eos_token"), path.display().to_string()).map(Some)
    }

    /// Renders a conversation; with `add_generation_prompt` the text ends where the assistant's
    /// reply begins.
    pub fn render(&self, turns: &[(ChatRole, &str)], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> std::result::Result<String, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        let messages: Vec<Message> = turns.iter().map(|(role, content)| Message { role: role.as_str(), content }).collect();
        let ctx = context! {
            messages => minijinja::value::Serde(&messages),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        env.render_str(&self.source, ctx).map_err(|e| anyhow!("rendering the chat template ({}): {e:#}", self.origin))
    }

    /// Whether this template renders system + user prompts exactly as ChatML does (SmolLM2's and
    /// Qwen2.5's do): stores keyed before templates were read stay valid for such models.
    pub fn renders_as_chatml(&self) -> bool {
        let probe = [(ChatRole::System, "s"), (ChatRole::User, "u")];
        self.render(&probe, true).ok() == ChatTemplate::chatml().render(&probe, true).ok()
    }

    /// The template's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A system + user prompt split around the user's text: `prefix + user + suffix` is the
    /// rendered prompt, the prefix the same for every user text (so a batch prefills it once).
    pub fn split_user_turn(&self, system: &str) -> Result<(String, String)> {
        let full = self.render(&[(ChatRole::System, system), (ChatRole::User, USER_SLOT)], true)?;
        let (prefix, suffix) = full
            .split_once(USER_SLOT)
            .with_context(|| format!("the chat template of {} does not show the user's text verbatim", self.origin))?;
        if suffix.contains(USER_SLOT) {
            bail!("the chat template of {} shows the user's text twice", self.origin);
        }
        Ok((prefix.to_string(), suffix.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN_LIKE: &str = "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen.<|im_end|>\\n' }}{%- endif %}{%- for message in messages %}{%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\" and not message.tool_calls) %}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endif %}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

    #[test]
    fn chatml_renders_as_the_format_describes() {
        let t = ChatTemplate::chatml();
        assert_eq!(
            t.render(&[(ChatRole::System, "be brief"), (ChatRole::User, "hi")], true).unwrap(),
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(t.render(&[(ChatRole::User, "hi")], false).unwrap(), "<|im_start|>user\nhi<|im_end|>\n");
    }

    #[test]
    fn qwen_style_template_with_defaults_and_missing_attributes() {
        let t = ChatTemplate::new(QWEN_LIKE, "", "<|im_end|>", "test").unwrap();
        assert!(t.renders_as_chatml());
        // No system turn: the template's own default system prompt.
        assert_eq!(
            t.render(&[(ChatRole::User, "q")], true).unwrap(),
            "<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n"
        );
        let (prefix, suffix) = t.split_user_turn("sys").unwrap();
        assert_eq!(prefix, "<|im_start|>system\nsys<|im_end|>\n<|im_start|>user\n");
        assert_eq!(suffix, "<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn python_methods_and_raise_exception_work_as_in_transformers() {
        let t = ChatTemplate::new(
            "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'tool' %}{{ raise_exception('no tools') }}{% endif %}[{{ m['role'] | upper }}] {{ m['content'].strip() }}\n{% endfor %}",
            "<s>",
            "</s>",
            "test",
        )
        .unwrap();
        assert_eq!(t.render(&[(ChatRole::User, "  hi  ")], false).unwrap(), "<s>[USER] hi\n");
        assert!(!t.renders_as_chatml());
        let bad = ChatTemplate::new("{{ messages[0].content | nosuchfilter }}", "", "", "broken");
        assert!(format!("{:#}", bad.unwrap_err()).contains("broken"));
        let hidden = ChatTemplate::new("{% for m in messages %}{{ m['role'] }}{% endfor %}", "", "", "drops text").unwrap();
        assert!(hidden.split_user_turn("s").unwrap_err().to_string().contains("verbatim"));
    }

    #[test]
    fn tokenizer_config_templates_as_string_or_named_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer_config.json");
        std::fs::write(&path, serde_json::json!({"chat_template": CHATML, "eos_token": {"content": "<|im_end|>"}}).to_string()).unwrap();
        let t = ChatTemplate::from_tokenizer_config(&path).unwrap().unwrap();
        assert_eq!(t.eos_token, "<|im_end|>");
        std::fs::write(
            &path,
            serde_json::json!({"chat_template": [{"name": "tool_use", "template": "x"}, {"name": "default", "template": CHATML}]})
                .to_string(),
        )
        .unwrap();
        assert_eq!(ChatTemplate::from_tokenizer_config(&path).unwrap().unwrap().source, CHATML);
        std::fs::write(&path, "{}").unwrap();
        assert!(ChatTemplate::from_tokenizer_config(&path).unwrap().is_none());
        assert!(ChatTemplate::from_tokenizer_config(&dir.path().join("absent.json")).unwrap().is_none());
    }
}
