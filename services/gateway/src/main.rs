use caretrail_gateway::{Application, Config, SERVICE};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::load()?;
    let _telemetry = caretrail_platform::telemetry::init(SERVICE, config.log_format);
    Application::build(config)
        .await?
        .run_until_stopped()
        .await?;
    Ok(())
}
