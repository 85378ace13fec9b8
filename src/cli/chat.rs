//! `mlxrun chat`: a conversation with a model through its own chat template.
//!
//! Interactive by default: each line read from standard input is a user message, the reply
//! streams to standard output, and the conversation (with its KV cache) carries over to
//! the next line. `/reset` starts over, `/exit` or end of input quits. With `--message`
//! (repeatable) it sends those messages in turn instead, prints the replies and exits —
//! for scripts; `--json` then prints one JSON object per reply.
use std::io::{BufRead, IsTerminal, Write};

use clap::Args;

use super::generate::{metrics_json, metrics_line, GenerationArgs};
use super::ModelArgs;
use crate::chat::{ChatOptions, ChatSession, Message};
use crate::engine::{GenerateParams, Model};
use crate::error::{Error, Result};

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// Send this user message instead of reading stdin (repeatable: sent in turn), print the
    /// replies and exit
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub message: Vec<String>,

    /// A system message to start the conversation with
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub system: Option<String>,

    /// Which of the model's chat templates to use (such as tool_use) [default: the model's default]
    #[arg(long, value_name = "NAME")]
    pub template: Option<String>,

    /// Print no metrics after the replies
    #[arg(long)]
    pub quiet: bool,

    /// Print one JSON object per reply (needs --message)
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    #[command(flatten)]
    pub generation: GenerationArgs,
}

pub fn run(args: ChatArgs) -> Result<()> {
    let model_path = args.model.model.clone();
    let ChatArgs { message: messages, system, template, quiet, json, .. } = args;
    let params = args.generation.params()?;
    let load = args.model.options()?;
    params.validate()?;
    if json && messages.is_empty() {
        return Err(Error::invalid("--json needs --message (interactive chat prints text)"));
    }

    let mut model = args.model.load(&load)?;
    // On a sharded model every rank takes every turn; rank 0 alone reads stdin and prints.
    let group = load.group.clone();
    let silent = group.as_ref().is_some_and(|g| g.rank() != 0);
    let options = ChatOptions { template, ..ChatOptions::default() };
    let mut session = ChatSession::new(&mut model, options)?;
    if let Some(s) = &system {
        session.messages_mut().push(Message::system(s.as_str()));
    }

    if !messages.is_empty() {
        for text in messages {
            turn(&mut model, &mut session, &text, &params, json, quiet, silent)?;
        }
        return Ok(());
    }

    let interactive = std::io::stdin().is_terminal() && !silent;
    if interactive {
        eprintln!("chatting with {model_path}: /reset starts over, /exit or Ctrl-D quits");
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let line = if silent { None } else { lines.next().transpose().map_err(|e| Error::Io(format!("stdin: {e}")))? };
        let line = match &group {
            Some(g) => g.share_text(line.as_deref())?,
            None => line,
        };
        let Some(line) = line else { break };
        let text = line.trim();
        match text {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                session.reset();
                if let Some(s) = &system {
                    session.messages_mut().push(Message::system(s.as_str()));
                }
                if !silent {
                    eprintln!("(conversation cleared)");
                }
                continue;
            }
            _ => turn(&mut model, &mut session, text, &params, false, quiet, silent)?,
        }
    }
    Ok(())
}

/// Sends one user message and streams (or, with `json`, prints) the reply; `silent` (a
/// rank other than 0) takes the turn without printing.
#[allow(clippy::too_many_arguments)]
fn turn(
    model: &mut Model,
    session: &mut ChatSession,
    text: &str,
    params: &GenerateParams,
    json: bool,
    quiet: bool,
    silent: bool,
) -> Result<()> {
    let stdout = std::io::stdout();
    let gen = session.send(model, Message::user(text), params, |ev| {
        if json || silent {
            return true;
        }
        let mut out = stdout.lock();
        // A closed stdout (piped into `head`) stops generation quietly.
        out.write_all(ev.text.as_bytes()).and_then(|_| out.flush()).is_ok()
    })?;
    if silent {
        return Ok(());
    }
    if json {
        let v = serde_json::json!({
            "message": text,
            "reply": gen.text,
            "tokens": gen.tokens,
            "finish_reason": format!("{:?}", gen.finish_reason).to_lowercase(),
            "metrics": metrics_json(&gen.metrics),
        });
        println!("{v}");
    } else {
        println!();
        if !quiet {
            eprintln!("{}", metrics_line(&gen.metrics, gen.finish_reason));
        }
    }
    Ok(())
}
