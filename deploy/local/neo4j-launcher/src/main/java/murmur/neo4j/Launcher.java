package murmur.neo4j;

import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;

/**
 * Runs an embedded Neo4j Community database with Bolt on 127.0.0.1:port, auth disabled, until
 * SIGTERM. Usage: Launcher HOME_DIR BOLT_PORT [PAGE_CACHE_BYTES].
 */
public final class Launcher {
  private Launcher() {}

  public static void main(String[] args) throws InterruptedException {
    if (args.length < 2) {
      System.err.println("usage: Launcher HOME_DIR BOLT_PORT [PAGE_CACHE_BYTES]");
      System.exit(2);
    }
    Path home = Path.of(args[0]).toAbsolutePath();
    int port = Integer.parseInt(args[1]);
    long pageCache = args.length > 2 ? Long.parseLong(args[2]) : 64L * 1024 * 1024;

    DatabaseManagementService dbms =
        new DatabaseManagementServiceBuilder(home)
            .setConfig(BoltConnector.enabled, true)
            .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
            .setConfig(BoltConnector.advertised_address, new SocketAddress("127.0.0.1", port))
            .setConfig(HttpConnector.enabled, false)
            .setConfig(GraphDatabaseSettings.auth_enabled, false)
            .setConfig(GraphDatabaseSettings.pagecache_memory, pageCache)
            .build();

    CountDownLatch stopped = new CountDownLatch(1);
    // The JVM runs shutdown hooks on SIGTERM/SIGINT: close the store cleanly so the next start
    // does not need recovery.
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  dbms.shutdown();
                  stopped.countDown();
                }));

    if (!dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME).isAvailable(TimeUnit.MINUTES.toMillis(2))) {
      System.err.println("neo4j database did not become available");
      System.exit(1);
    }
    System.out.println("NEO4J READY bolt://127.0.0.1:" + port);
    System.out.flush();
    stopped.await();
  }
}
