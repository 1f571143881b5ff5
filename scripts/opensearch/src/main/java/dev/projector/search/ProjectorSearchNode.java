package dev.projector.search;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import org.apache.logging.log4j.LogManager;
import org.apache.logging.log4j.Logger;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.config.Configurator;
import org.opensearch.Version;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.logging.LogConfigurator;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.mapper.MapperExtrasPlugin;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.painless.PainlessPlugin;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

/**
 * One OpenSearch node in this JVM, for Projector's tests and demo (scripts/opensearch.sh).
 *
 * <p>The distribution's entry point ({@code org.opensearch.bootstrap.OpenSearch}) is not used: it
 * refuses to run as root, checks the classpath for duplicate classes (JarHell), installs a
 * SecurityManager with per-plugin policies and enforces the production bootstrap checks, none of
 * which a node built from Maven Central jars on one classpath can satisfy. Instead the node is
 * made here from its settings, with its modules passed as classpath plugins.
 *
 * <pre>
 * ProjectorSearchNode --home DIR [--data DIR] [--port N] [--exit-after-start] [-Ename=value ...]
 * </pre>
 *
 * Each option falls back to a system property ({@code projector.search.home}, {@code .data},
 * {@code .port}); {@code -E} sets any other node setting, as OpenSearch's own command line does.
 * HOME/config must hold a log4j2.properties. SIGTERM (or SIGINT) closes the node cleanly.
 * {@code --exit-after-start} closes it as soon as it has started: the training run after which the
 * JVM writes the class-data archive that makes later starts about twice as fast.
 */
public final class ProjectorSearchNode extends Node {

    /** The modules the tests rely on; the distribution loads them from its modules/ directory. */
    private static final List<Class<? extends Plugin>> PLUGINS = List.of(
        Netty4Plugin.class,
        CommonAnalysisPlugin.class,
        PainlessPlugin.class,
        MapperExtrasPlugin.class,
        ReindexPlugin.class
    );

    private ProjectorSearchNode(Environment environment) {
        // true: index settings reserved to OpenSearch itself are refused, as on a real node.
        super(environment, PLUGINS, true);
    }

    public static void main(String[] args) throws Exception {
        String home = System.getProperty("projector.search.home");
        String data = System.getProperty("projector.search.data");
        String port = System.getProperty("projector.search.port", "9200");
        boolean exitAfterStart = false;
        Settings.Builder overrides = Settings.builder();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            if (arg.equals("--home") && i + 1 < args.length) {
                home = args[++i];
            } else if (arg.equals("--data") && i + 1 < args.length) {
                data = args[++i];
            } else if (arg.equals("--port") && i + 1 < args.length) {
                port = args[++i];
            } else if (arg.equals("--exit-after-start")) {
                exitAfterStart = true;
            } else if (arg.startsWith("-E") && arg.indexOf('=') > 2) {
                int eq = arg.indexOf('=');
                overrides.put(arg.substring(2, eq), arg.substring(eq + 1));
            } else {
                usage("unexpected argument: " + arg);
            }
        }
        if (home == null) {
            usage("--home is required");
        }
        Path homeDir = Path.of(home).toAbsolutePath();
        Path dataDir = data == null ? homeDir.resolve("data") : Path.of(data).toAbsolutePath();
        Path configDir = homeDir.resolve("config");
        if (!Files.isRegularFile(configDir.resolve("log4j2.properties"))) {
            usage("no log4j2.properties in " + configDir);
        }
        Files.createDirectories(dataDir);
        Files.createDirectories(homeDir.resolve("logs"));

        Settings settings = Settings.builder()
            .put("path.home", homeDir.toString())
            .put("path.data", dataDir.toString())
            .put("path.logs", homeDir.resolve("logs").toString())
            .put("cluster.name", "projector-search")
            .put("node.name", "projector-search")
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", port)
            // Nothing joins this node: any free port for the transport layer.
            .put("transport.port", "0")
            // Test machines are often fuller than the 85/90/95 % watermarks allow.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put(overrides.build())
            .build();

        // Catches Log4j errors from before the configuration (LogConfigurator.configure fails then).
        LogConfigurator.registerErrorListener();
        Environment environment = InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), configDir, () -> "projector-search");
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(environment.settings()));
        LogConfigurator.configure(environment);
        Logger logger = LogManager.getLogger(ProjectorSearchNode.class);

        Node node = new ProjectorSearchNode(environment);
        CountDownLatch closed = new CountDownLatch(1);
        // Log4j's own shutdown hook is off (-Dlog4j.shutdownHookEnabled=false): logging stops last.
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                logger.info("stopping the node");
                node.close();
                if (!node.awaitClose(30, TimeUnit.SECONDS)) {
                    logger.warn("the node did not close within 30s");
                }
                logger.info("the node is closed");
            } catch (IOException | InterruptedException | RuntimeException e) {
                logger.warn("closing the node failed", e);
            } finally {
                closed.countDown();
                Configurator.shutdown((LoggerContext) LogManager.getContext(false));
            }
        }, "projector-search-shutdown"));

        try {
            node.start();
        } catch (Exception | Error e) {
            logger.error("the node did not start", e);
            // Runs the shutdown hook, which closes what was started.
            System.exit(1);
        }
        logger.info("OpenSearch {} is listening on http://127.0.0.1:{}", Version.CURRENT, port);
        if (exitAfterStart) {
            System.exit(0);
        }
        // The node's threads are daemons: this one keeps the JVM alive until the shutdown hook ran.
        closed.await();
    }

    private static void usage(String problem) {
        System.err.println(problem);
        System.err.println("usage: ProjectorSearchNode --home DIR [--data DIR] [--port N] [--exit-after-start] [-Ename=value ...]");
        System.exit(2);
    }
}
